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

// configWithNoticeTemplates is configFor with the template section tmpl,
// whose values may be objects (template.<notice>.subject, ...).
func configWithNoticeTemplates(t *testing.T, srv *smtptest.Server, tmpl map[string]any) json.RawMessage {
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

func notice(kind string) *sdk.NoticeMessage {
	return &sdk.NoticeMessage{
		Kind:           kind,
		At:             time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC),
		IdentityID:     "id-1",
		IdentityTraits: json.RawMessage(`{"email":"alice@example.com","name":{"first":"Alice"}}`),
		LoginURL:       "https://accounts.example.com/login",
		SettingsURL:    "https://accounts.example.com/settings",
	}
}

// Each notice is rendered from its own templates (the default ones and a
// configured one) and sent over real gRPC to a real SMTP server; Render
// returns the mail SendMessage sends.
func TestNoticesAreRenderedAndSent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		template map[string]any
		kind     string
		want     []string // in the mail as the SMTP server got it
		notWant  []string
	}{
		{
			name:    "password_changed, default templates",
			kind:    sdk.NoticePasswordChanged,
			want:    []string{"Subject: Your password was changed", "alice@example.com was changed on", "2026-11-26 23:00 UTC", "https://accounts.example.com/login"},
			notWant: []string{"temporary password for it"},
		},
		{
			name:    "reset_void, default templates",
			kind:    sdk.NoticeResetVoid,
			want:    []string{"Subject: Someone asked to recover your account", "current password", "2026-11-26 23:00 UTC", "https://accounts.example.com/settings"},
			notWant: []string{"was changed on"},
		},
		{
			name: "password_changed, inline templates of its own",
			template: map[string]any{
				"subject":          "Your temporary password",
				"password_changed": map[string]any{"subject": "Changed for {{.Identity.Traits.name.first}}", "text": "Changed at {{formatTime .At}}; not you? {{.LoginURL}}\n"},
			},
			kind:    sdk.NoticePasswordChanged,
			want:    []string{"Subject: Changed for Alice", "Changed at 2026-11-26 23:00 UTC; not you? https://accounts.example.com/login"},
			notWant: []string{"Your temporary password"},
		},
		{
			name: "reset_void keeps its defaults when only the other notice has templates",
			template: map[string]any{
				"password_changed": map[string]any{"subject": "Changed"},
			},
			kind: sdk.NoticeResetVoid,
			want: []string{"Subject: Someone asked to recover your account"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
			gw := sdktest.Connect(t, New())
			ctx := context.Background()
			cfg := configFor(srv)
			if tt.template != nil {
				cfg = configWithNoticeTemplates(t, srv, tt.template)
			}
			if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: cfg}); err != nil {
				t.Fatal(err)
			}
			rendered, err := gw.Render(ctx, &sdk.RenderRequest{Recipient: "alice@example.com", Notice: notice(tt.kind)})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if _, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "alice@example.com", Notice: notice(tt.kind)}); err != nil {
				t.Fatalf("SendMessage: %v", err)
			}
			mails := srv.State().Mails
			if len(mails) != 1 || len(mails[0].To) != 1 || mails[0].To[0] != "alice@example.com" {
				t.Fatalf("server received %+v, want one mail to alice@example.com", mails)
			}
			data := unfold(string(mails[0].Data))
			for _, want := range tt.want {
				if !strings.Contains(data, want) {
					t.Errorf("mail lacks %q:\n%s", want, data)
				}
			}
			for _, notWant := range tt.notWant {
				if strings.Contains(data, notWant) {
					t.Errorf("mail holds %q:\n%s", notWant, data)
				}
			}
			if !strings.Contains(data, "Subject: "+rendered.Subject) || !strings.Contains(data, firstLine(rendered.TextBody)) {
				t.Errorf("Render = %+v, not the mail that was sent:\n%s", rendered, data)
			}
		})
	}
}

// unfold undoes quoted-printable soft line breaks and "=3D", so that a test
// can look for a sentence in a mail as the SMTP server got it.
func unfold(data string) string {
	data = strings.ReplaceAll(data, "=\r\n", "")
	return strings.ReplaceAll(data, "=3D", "=")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// A notice the plugin cannot build is the host's mistake and is refused
// as such, with nothing sent: an unknown kind, traits that are not an
// object, a template that fails on this identity, a render request naming
// two mails.
func TestNoticesThePluginCannotBuildAreRefused(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	gw := sdktest.Connect(t, New())
	ctx := context.Background()
	cfg := configWithNoticeTemplates(t, srv, map[string]any{
		"reset_void": map[string]any{"subject": "For {{.Identity.Traits.name.first}}"},
	})
	if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	withTraits := func(kind, traits string) *sdk.NoticeMessage {
		n := notice(kind)
		n.IdentityTraits = json.RawMessage(traits)
		return n
	}
	tests := []struct {
		name   string
		notice *sdk.NoticeMessage
		want   []string
	}{
		{"unknown kind", notice("password_expired"), []string{`notice kind "password_expired"`, "unknown notice kind"}},
		{"traits not an object", withTraits(sdk.NoticePasswordChanged, `"alice-secret@example.org"`), []string{"identity traits are not a JSON object", "JSON string"}},
		{"template fails on this identity", withTraits(sdk.NoticeResetVoid, `{"name":{"last":"Secret-Last"}}`), []string{"render reset_void notice", "template.reset_void.subject", "lacks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for what, call := range map[string]func() error{
				"SendMessage": func() error {
					_, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "alice@example.com", Notice: tt.notice})
					return err
				},
				"Render": func() error {
					_, err := gw.Render(ctx, &sdk.RenderRequest{Recipient: "alice@example.com", Notice: tt.notice})
					return err
				},
			} {
				err := call()
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Fatalf("%s = %v, want sdk.ErrInvalidArgument", what, err)
				}
				for _, want := range tt.want {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s error %q does not contain %q", what, err, want)
					}
				}
				for _, secret := range []string{"alice-secret", "Secret-Last"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("%s error quotes the data: %v", what, err)
					}
				}
			}
		})
	}
	if n := len(srv.State().Mails); n != 0 {
		t.Errorf("the server received %d mails, want none", n)
	}
	both := &sdk.RenderRequest{Recipient: "alice@example.com", Notice: notice(sdk.NoticeResetVoid), Password: &sdk.PasswordMessage{Password: "x", ExpiresAt: time.Now()}}
	if _, err := New().Render(ctx, both); !errors.Is(err, sdk.ErrNotConfigured) {
		t.Errorf("Render before Configure = %v, want sdk.ErrNotConfigured", err)
	}
	local := New()
	if _, err := local.Configure(ctx, &sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Render(ctx, both); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Render(password and notice) = %v, want sdk.ErrInvalidArgument", err)
	}
}

// A notice template that reaches for a secret, which a notice does not
// have, is refused at Configure, naming its key; the running config stays.
func TestConfigureRefusesANoticeTemplateReachingForASecret(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	gw := New()
	ctx := context.Background()
	if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: configFor(srv)}); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{sdk.NoticePasswordChanged, sdk.NoticeResetVoid} {
		for _, part := range []string{"subject", "text", "html"} {
			cfg := configWithNoticeTemplates(t, srv, map[string]any{kind: map[string]any{part: "Hi {{.Password}}"}})
			_, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: cfg})
			key := fmt.Sprintf("template.%s.%s", kind, part)
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), key) {
				t.Errorf("Configure(%s: {{.Password}}) = %v, want sdk.ErrInvalidArgument naming %s", key, err, key)
			}
		}
	}
	if h, _ := gw.Health(ctx, &sdk.HealthRequest{}); !h.Configured {
		t.Error("the plugin lost its config after refusing a new one")
	}
	if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: configWithNoticeTemplates(t, srv, map[string]any{"reset_void": map[string]any{"subjet": "x"}})}); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "subjet") {
		t.Errorf("Configure(template.reset_void.subjet) = %v, want the unknown key refused", err)
	}
}
