// Package sdktest is the conformance kit for gateway plugins: Run drives an
// implementation through the real go-plugin gRPC path, and Fake stands in for
// a plugin in host tests that need no subprocess.
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Options tell Run how to exercise an implementation.
type Options struct {
	// Config is a config section the plugin accepts and that lets it send
	// to Recipient (e.g. an SMTP server the test started).
	Config json.RawMessage
	// InvalidConfig is a config section the plugin must refuse.
	InvalidConfig json.RawMessage
	// Recipient receives the test mails.
	Recipient string
	// Delivered, when set, is called after each successful send with the
	// subject the kit sent and must fail the test if it did not arrive.
	Delivered func(t *testing.T, subject string)
}

// Run checks that impl keeps the contract when called over gRPC through
// go-plugin, the way a host calls it: the core (sdk.Gateway) always, and
// each optional capability (sdk.Renderer, sdk.Prober) the plugin offers; a
// capability it lacks must answer sdk.ErrUnsupported.
func Run(t *testing.T, impl sdk.Gateway, opts Options) {
	t.Helper()
	gw := Connect(t, impl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)

	t.Run("refuses an invalid config", func(t *testing.T) {
		_, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: opts.InvalidConfig})
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("Configure(invalid) = %v, want an error matching sdk.ErrInvalidArgument", err)
		}
	})
	t.Run("accepts a valid config and reports healthy", func(t *testing.T) {
		if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: opts.Config}); err != nil {
			t.Fatalf("Configure(valid): %v", err)
		}
		h, err := gw.Health(ctx, &sdk.HealthRequest{})
		if err != nil {
			t.Fatalf("Health: %v", err)
		}
		if !h.Configured {
			t.Fatalf("Health after Configure = %+v, want Configured", h)
		}
	})
	t.Run("keeps its config after refusing a new one", func(t *testing.T) {
		_, _ = gw.Configure(ctx, &sdk.ConfigureRequest{Config: opts.InvalidConfig})
		h, err := gw.Health(ctx, &sdk.HealthRequest{})
		if err != nil || !h.Configured {
			t.Fatalf("Health after refused reload = %+v, %v; want still Configured", h, err)
		}
	})
	t.Run("issues distinct non-empty passwords", func(t *testing.T) {
		seen := map[string]bool{}
		for range 20 {
			resp, err := gw.IssuePassword(ctx, &sdk.IssuePasswordRequest{IdentityID: "7c1f7e9e-0000-4000-8000-000000000001"})
			if err != nil {
				t.Fatalf("IssuePassword: %v", err)
			}
			if resp.Password == "" || seen[resp.Password] {
				t.Fatalf("IssuePassword returned an empty or repeated password (%d chars)", len(resp.Password))
			}
			seen[resp.Password] = true
		}
	})
	t.Run("refuses a message without content", func(t *testing.T) {
		_, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: opts.Recipient})
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("SendMessage(no content) = %v, want sdk.ErrInvalidArgument", err)
		}
	})
	t.Run("sends a rendered message", func(t *testing.T) {
		subject := "sdktest rendered " + time.Now().Format(time.RFC3339Nano)
		_, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{
			Recipient: opts.Recipient,
			Rendered:  &sdk.RenderedMessage{Subject: subject, TextBody: "hello from sdktest"},
		})
		if err != nil {
			t.Fatalf("SendMessage(rendered): %v", err)
		}
		if opts.Delivered != nil {
			opts.Delivered(t, subject)
		}
	})
	t.Run("sends a password message", func(t *testing.T) {
		_, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{
			Recipient: opts.Recipient,
			Password: &sdk.PasswordMessage{
				Password:       "Sdktest-Pw-4729!",
				ExpiresAt:      time.Now().Add(time.Hour),
				LoginURL:       "http://127.0.0.1:4455/login",
				IdentityID:     "7c1f7e9e-0000-4000-8000-000000000001",
				IdentityTraits: json.RawMessage(`{"email":"` + opts.Recipient + `"}`),
			},
		})
		if err != nil {
			t.Fatalf("SendMessage(password): %v", err)
		}
	})
	t.Run("sends a notice of each kind", func(t *testing.T) {
		for _, kind := range []string{sdk.NoticePasswordChanged, sdk.NoticeResetVoid} {
			_, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: opts.Recipient, Notice: sampleNotice(kind, opts.Recipient)})
			if err != nil {
				t.Fatalf("SendMessage(notice %s): %v", kind, err)
			}
		}
	})
	t.Run("refuses a notice of an unknown kind", func(t *testing.T) {
		_, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: opts.Recipient, Notice: sampleNotice("sdktest_unknown", opts.Recipient)})
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("SendMessage(notice of an unknown kind) = %v, want sdk.ErrInvalidArgument", err)
		}
	})

	// The optional capabilities, discovered as a host discovers them: by
	// calling. A plugin that lacks one answers sdk.ErrUnsupported; one that
	// offers it must keep its contract.
	t.Run("Render", func(t *testing.T) {
		req := &sdk.RenderRequest{Recipient: opts.Recipient, Password: &sdk.PasswordMessage{
			Password: "Sdktest-Render-8361", ExpiresAt: time.Now().Add(time.Hour), LoginURL: "http://127.0.0.1:4455/login",
			IdentityID: "7c1f7e9e-0000-4000-8000-000000000001", IdentityTraits: json.RawMessage(`{"email":"` + opts.Recipient + `"}`),
		}}
		resp, err := gw.Render(ctx, req)
		if errors.Is(err, sdk.ErrUnsupported) {
			t.Log("Render is not offered: previews fail and the host skips the rendering check before a reset")
			return
		}
		t.Run("renders a password message without sending it", func(t *testing.T) {
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if resp.Subject == "" || !strings.Contains(resp.TextBody+resp.HTMLBody, "Sdktest-Render-8361") {
				t.Fatalf("Render = %+v, want a subject and a body naming the password", resp)
			}
			if _, err := gw.Render(ctx, &sdk.RenderRequest{Recipient: opts.Recipient}); !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Render(no password message) = %v, want sdk.ErrInvalidArgument", err)
			}
		})
		t.Run("renders a notice of each kind", func(t *testing.T) {
			for _, kind := range []string{sdk.NoticePasswordChanged, sdk.NoticeResetVoid} {
				resp, err := gw.Render(ctx, &sdk.RenderRequest{Recipient: opts.Recipient, Notice: sampleNotice(kind, opts.Recipient)})
				if err != nil {
					t.Fatalf("Render(notice %s): %v", kind, err)
				}
				if resp.Subject == "" || resp.TextBody+resp.HTMLBody == "" {
					t.Fatalf("Render(notice %s) = %+v, want a subject and a body", kind, resp)
				}
			}
		})
		t.Run("renders a password message carrying Kratos's recovery code or link", func(t *testing.T) {
			// A self-service reset passes on Kratos's own code (code method) or
			// link (link method); the plugin may show them or not, but must
			// render the mail either way.
			for _, kratos := range []sdk.PasswordMessage{
				{RecoveryCode: "482913"},
				{RecoveryURL: "http://127.0.0.1:4433/self-service/recovery?flow=7c1f7e9e&token=sdktest"},
			} {
				msg := kratos
				msg.Password, msg.ExpiresAt, msg.LoginURL = "Sdktest-Render-5172", time.Now().Add(time.Hour), "http://127.0.0.1:4455/login"
				msg.IdentityID, msg.IdentityTraits = "7c1f7e9e-0000-4000-8000-000000000001", json.RawMessage(`{"email":"`+opts.Recipient+`"}`)
				resp, err := gw.Render(ctx, &sdk.RenderRequest{Recipient: opts.Recipient, Password: &msg})
				if err != nil {
					t.Fatalf("Render(with Kratos's recovery code or link): %v", err)
				}
				if resp.Subject == "" || !strings.Contains(resp.TextBody+resp.HTMLBody, "Sdktest-Render-5172") {
					t.Fatalf("Render = %+v, want a subject and a body naming the password", resp)
				}
			}
		})
	})
	t.Run("Probe: probes the SMTP server stage by stage", func(t *testing.T) {
		resp, err := gw.Probe(ctx, &sdk.ProbeRequest{Recipient: opts.Recipient})
		switch {
		case errors.Is(err, sdk.ErrUnsupported):
			t.Log("Probe is not offered: gateway smtp test says so")
		case err != nil:
			t.Fatalf("Probe: %v", err)
		case !resp.Delivered || len(resp.Trace) == 0 || resp.Err != "":
			t.Fatalf("Probe = %+v, want a delivery with its stages", resp)
		}
	})
}

// Connect serves impl over an in-memory go-plugin gRPC connection and returns
// the host's view of it, as a host gets it from sdk.Launch.
func Connect(t testing.TB, impl sdk.Gateway) sdk.Remote {
	t.Helper()
	// Closing the client asks the server to stop through go-plugin's
	// controller; stopping the server here as well would race with that.
	client, _ := goplugin.TestPluginGRPCConn(t, false, sdk.PluginMap(impl))
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatalf("dispense %s: %v", sdk.PluginName, err)
	}
	gw, ok := raw.(sdk.Remote)
	if !ok {
		t.Fatalf("dispensed %T, not an sdk.Remote", raw)
	}
	return gw
}

// sampleNotice is a notice of kind to recipient as a host sends it.
func sampleNotice(kind, recipient string) *sdk.NoticeMessage {
	return &sdk.NoticeMessage{
		Kind:           kind,
		At:             time.Now(),
		IdentityID:     "7c1f7e9e-0000-4000-8000-000000000001",
		IdentityTraits: json.RawMessage(`{"email":"` + recipient + `"}`),
		LoginURL:       "http://127.0.0.1:4455/login",
		SettingsURL:    "http://127.0.0.1:4455/settings",
	}
}
