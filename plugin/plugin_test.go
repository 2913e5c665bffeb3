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
