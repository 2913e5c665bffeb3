package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

func configFor(srv *smtptest.Server) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{
		"password": {"length": 20, "ttl": "1h", "revoke_sessions": true},
		"smtp": {"host": "127.0.0.1", "port": "%d", "email_address": %q, "sender_name": "Example Accounts",
		         "authorization_code": %q, "security": "tls", "ca_file": %q}
	}`, srv.Port, smtptest.User, smtptest.Password, srv.PKI.CAFile))
}

// The plugin passes the SDK's conformance kit over real go-plugin gRPC,
// delivering to a real SMTP server with implicit TLS and AUTH.
func TestConformance(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	sdktest.Run(t, New(), sdktest.Options{
		Config:        configFor(srv),
		InvalidConfig: json.RawMessage(`{"smtp": {"port": 0}}`),
		Recipient:     "alice@example.com",
		Delivered: func(t *testing.T, subject string) {
			for _, m := range srv.State().Mails {
				if strings.Contains(string(m.Data), "Subject: "+subject) {
					return
				}
			}
			t.Errorf("no mail with subject %q reached the SMTP server", subject)
		},
	})
}

func TestPasswordMailIsRenderedAndSent(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	gw := sdktest.Connect(t, New())
	ctx := context.Background()
	if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: configFor(srv)}); err != nil {
		t.Fatal(err)
	}
	pw, err := gw.IssuePassword(ctx, &sdk.IssuePasswordRequest{IdentityID: "id-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pw.Password) != 20 {
		t.Errorf("password has %d characters, want password.length 20", len(pw.Password))
	}
	_, err = gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "alice@example.com", Password: &sdk.PasswordMessage{
		Password: pw.Password, ExpiresAt: time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC),
		LoginURL: "https://accounts.example.com/login", IdentityID: "id-1", IdentityTraits: json.RawMessage(`{"email":"alice@example.com"}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	mails := srv.State().Mails
	if len(mails) != 1 {
		t.Fatalf("server received %d mails, want 1", len(mails))
	}
	data := string(mails[0].Data)
	for _, want := range []string{"Subject: Your temporary password", "2026-11-26 23:00 UTC", "https://accounts.example.com/login", `"Example Accounts"`} {
		if !strings.Contains(data, want) {
			t.Errorf("mail lacks %q:\n%s", want, data)
		}
	}
	if !strings.Contains(data, pw.Password) && !strings.Contains(data, strings.ReplaceAll(pw.Password, "=", "=3D")) {
		t.Errorf("mail does not carry the issued password")
	}
}

// A template can put Kratos's own recovery code or link into the password
// mail; an admin reset, which has neither, still gets its mail.
func TestPasswordMailCarriesKratosCode(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	gw := sdktest.Connect(t, New())
	ctx := context.Background()
	cfg := configWithTemplates(t, srv, map[string]string{
		"text": "Password: {{.Password}}\n{{with .RecoveryCode}}Or enter the code {{.}}\n{{end}}{{with .RecoveryURL}}Or open {{.}}\n{{end}}",
	})
	if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ code, link, want, notWant string }{
		{code: "482913", want: "Or enter the code 482913", notWant: "Or open"},
		{link: "https://auth.example.com/recover/abc", want: "Or open https://auth.example.com/recover/abc", notWant: "Or enter"}, // no "=": the body is quoted-printable
		{want: "Password: Admin-Reset-Pw-77", notWant: "Or "},
	} {
		_, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "alice@example.com", Password: &sdk.PasswordMessage{
			Password: "Admin-Reset-Pw-77", ExpiresAt: time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC),
			LoginURL: "https://accounts.example.com/login", IdentityID: "id-1", IdentityTraits: json.RawMessage(`{"email":"alice@example.com"}`),
			RecoveryCode: tt.code, RecoveryURL: tt.link,
		}})
		if err != nil {
			t.Fatal(err)
		}
		mails := srv.State().Mails
		data := string(mails[len(mails)-1].Data)
		if !strings.Contains(data, tt.want) || strings.Contains(data, tt.notWant) {
			t.Errorf("mail for code %q, link %q: want %q and no %q:\n%s", tt.code, tt.link, tt.want, tt.notWant, data)
		}
	}
}

func TestConfigureReportsEveryProblemWithItsKey(t *testing.T) {
	t.Parallel()
	_, err := New().Configure(context.Background(), &sdk.ConfigureRequest{Config: json.RawMessage(`{
		"password": {"length": 6},
		"smtp": {"host": "", "email_address": "not-an-address", "sender_name": "Evil\r\nBcc: x@example.com", "security": "tls"},
		"template": {"subject": "{{.Nope"}
	}`)})
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Configure = %v, want sdk.ErrInvalidArgument", err)
	}
	for _, key := range []string{"password.length", "smtp.host", "smtp.email_address", "smtp.sender_name", "template.subject"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestConfigureRefusesUnknownKeysAndNonJSON(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"unknown smtp key":     `{"smtp": {"hots": "x"}}`,
		"unknown template key": `{"template": {"dir": "/tmp"}}`,
		"not JSON":             `smtp: x`,
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New().Configure(context.Background(), &sdk.ConfigureRequest{Config: json.RawMessage(raw)})
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Configure(%s) = %v, want sdk.ErrInvalidArgument", raw, err)
			}
		})
	}
}

func TestUnconfiguredPluginRefusesWork(t *testing.T) {
	t.Parallel()
	g := New()
	if _, err := g.IssuePassword(context.Background(), &sdk.IssuePasswordRequest{}); !errors.Is(err, sdk.ErrNotConfigured) {
		t.Errorf("IssuePassword before Configure = %v, want sdk.ErrNotConfigured", err)
	}
	h, err := g.Health(context.Background(), &sdk.HealthRequest{})
	if err != nil || h.Configured {
		t.Errorf("Health before Configure = %+v, %v", h, err)
	}
}

func TestWarningsForInsecureModes(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.Plaintext})
	resp, err := New().Configure(context.Background(), &sdk.ConfigureRequest{Config: json.RawMessage(fmt.Sprintf(
		`{"smtp": {"host": "127.0.0.1", "port": %d, "email_address": "a@example.com", "sender_name": "A", "security": "none"}}`, srv.Port))})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "none") {
		t.Errorf("warnings = %q, want one about security none", resp.Warnings)
	}
}

// configWithTemplates is configFor(srv) with the template section tmpl.
func configWithTemplates(t *testing.T, srv *smtptest.Server, tmpl map[string]string) json.RawMessage {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(configFor(srv), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["template"] = tmpl
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jsonStrings returns every string in the JSON value raw, or raw itself if
// it is not JSON.
func jsonStrings(raw []byte) []string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return []string{string(raw)}
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// TestRenderErrorsQuoteNoData sends and previews password mails whose
// templates pass the check at Configure but fail on the identity's data: the
// host gets sdk.ErrInvalidArgument (its 422) with an error that names the
// template and the problem, and holds neither the password, nor the
// recipient, nor any trait value, since it logs the error and returns it
// over HTTP.
func TestRenderErrorsQuoteNoData(t *testing.T) {
	t.Parallel()
	const (
		password  = "Tq8#Lw2@PwSecret9"
		recipient = "rcpt.secret@example.org"
		loginURL  = "https://login.secret.example.org/welcome"
		code      = "730519"
		link      = "http://kratos.secret.example.org/self-service/recovery?token=TokSecret"
	)
	tests := []struct {
		name     string
		template map[string]string
		traits   string
		want     []string // in the error
		notWant  []string // besides the password, recipient and traits
	}{
		{
			name:     "subject with the password and a trait holding CRLF",
			template: map[string]string{"subject": "Password {{.Password}} for {{.Identity.Traits.name.first}}"},
			traits:   `{"name": {"first": "Eve\r\nBcc: injected.secret@example.org", "last": "Doe"}}`,
			want:     []string{"template.subject", "line break"},
			notWant:  []string{"Eve", "Bcc:"},
		},
		{
			name:     "subject with a missing trait",
			template: map[string]string{"subject": "Password for {{.Identity.Traits.name.first}}"},
			traits:   `{"email": "only.email.secret@example.org"}`,
			want:     []string{"template.subject", "{{.Identity.Traits.name.first}}", "lacks"},
		},
		{
			name:     "text ranges over a string trait",
			template: map[string]string{"text": "Hello\n{{range .Identity.Traits.name}}{{.}}{{end}}"},
			traits:   `{"name": "plain-name-secret"}`,
			want:     []string{"template.text", "line 2", "range over"},
		},
		{
			name:     "text indexes a string trait",
			template: map[string]string{"text": `{{index .Identity.Traits.name "first"}}`},
			traits:   `{"name": "indexed-name-secret"}`,
			want:     []string{"template.text", "calling index"},
		},
		{
			name:     "text slices a trait and ranges over the slice",
			template: map[string]string{"text": `{{with index .Identity.Traits "code"}}{{range slice . 3}}{{.}}{{end}}{{end}}`},
			traits:   `{"code": "abcSlicedSecret"}`,
			want:     []string{"template.text", "range over"},
			notWant:  []string{"SlicedSecret"},
		},
		{
			name:     "html compares values that eq would quote",
			template: map[string]string{"html": "<p>{{if eq .Identity.Traits.email .Identity.Traits.email}}same{{end}}</p>"},
			traits:   `{"email": ["listed.email.secret@example.org"]}`,
			want:     []string{"template.html", "calling eq"},
		},
		{
			name:     "html reads a field of a null trait",
			template: map[string]string{"html": "<p>{{.Identity.Traits.name.first}}</p>"},
			traits:   `{"name": null, "email": "null.name.secret@example.org"}`,
			want:     []string{"template.html", "null"},
		},
		{
			name:     "text ranges over Kratos's recovery link",
			template: map[string]string{"text": `{{if ne (slice .RecoveryURL 0 5) "https"}}{{range .RecoveryURL}}{{.}}{{end}}{{end}}`},
			traits:   `{"email": "link.secret@example.org"}`,
			want:     []string{"template.text", "{{range .RecoveryURL}}", "range over"},
			notWant:  []string{"kratos.secret", "TokSecret"},
		},
		{
			name:    "traits that are not JSON",
			traits:  `{"name": secret-token}`,
			want:    []string{"identity traits", "byte 10"},
			notWant: []string{"'s'", "secret-token"},
		},
		{
			name:    "traits that are a JSON number",
			traits:  `4711.0815`,
			want:    []string{"identity traits", "number"},
			notWant: []string{"4711"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
			gw := sdktest.Connect(t, New())
			ctx := context.Background()
			if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: configWithTemplates(t, srv, tt.template)}); err != nil {
				t.Fatalf("Configure: %v", err)
			}
			msg := &sdk.PasswordMessage{
				Password: password, ExpiresAt: time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC),
				LoginURL: loginURL, IdentityID: "id-secret-4711", IdentityTraits: json.RawMessage(tt.traits),
				RecoveryCode: code, RecoveryURL: link,
			}
			_, sendErr := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: recipient, Password: msg})
			_, renderErr := gw.Render(ctx, &sdk.RenderRequest{Recipient: recipient, Password: msg})
			for call, err := range map[string]error{"SendMessage": sendErr, "Render": renderErr} {
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Fatalf("%s = %v, want sdk.ErrInvalidArgument", call, err)
				}
				for _, want := range tt.want {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s error does not contain %q:\n%v", call, want, err)
					}
				}
				for _, v := range append([]string{password, recipient, loginURL, "id-secret-4711", code, link}, append(jsonStrings(msg.IdentityTraits), tt.notWant...)...) {
					if strings.Contains(err.Error(), v) {
						t.Errorf("%s error quotes %q:\n%v", call, v, err)
					}
				}
			}
			if n := len(srv.State().Mails); n != 0 {
				t.Errorf("the SMTP server received %d mails, want none", n)
			}
		})
	}
}
