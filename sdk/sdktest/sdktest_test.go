package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// memoryPlugin is a complete in-memory Gateway built from Fake, so the kit
// and the fake are tested together: the kit must pass a plugin that keeps
// the contract.
func memoryPlugin(sent *[]string) *Fake {
	var (
		mu         sync.Mutex
		configured bool
		n          atomic.Int64
	)
	return &Fake{
		ConfigureF: func(_ context.Context, r *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
			var c struct {
				OK bool `json:"ok"`
			}
			if json.Unmarshal(r.Config, &c) != nil || !c.OK {
				return nil, fmt.Errorf("%w: ok must be true", sdk.ErrInvalidArgument)
			}
			mu.Lock()
			configured = true
			mu.Unlock()
			return &sdk.ConfigureResponse{}, nil
		},
		IssuePasswordF: func(context.Context, *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
			return &sdk.IssuePasswordResponse{Password: fmt.Sprintf("pw-%d", n.Add(1))}, nil
		},
		SendMessageF: func(_ context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			if r.Rendered != nil {
				*sent = append(*sent, r.Rendered.Subject)
			}
			if r.Notice != nil && r.Notice.Kind != sdk.NoticePasswordChanged && r.Notice.Kind != sdk.NoticeResetVoid {
				return nil, fmt.Errorf("%w: unknown notice kind", sdk.ErrInvalidArgument)
			}
			return &sdk.SendMessageResponse{ServerReply: "250 ok"}, nil
		},
		RenderF: func(_ context.Context, r *sdk.RenderRequest) (*sdk.RenderResponse, error) {
			if r.Notice != nil {
				return &sdk.RenderResponse{Subject: "About your account", TextBody: "It was " + r.Notice.Kind}, nil
			}
			if r.Password == nil {
				return nil, fmt.Errorf("%w: no password message", sdk.ErrInvalidArgument)
			}
			return &sdk.RenderResponse{Subject: "Your password", TextBody: "It is " + r.Password.Password}, nil
		},
		ProbeF: func(context.Context, *sdk.ProbeRequest) (*sdk.ProbeResponse, error) {
			return &sdk.ProbeResponse{Delivered: true, Trace: []sdk.SMTPStep{{Stage: "connect", Detail: "memory"}}}, nil
		},
		HealthF: func(context.Context, *sdk.HealthRequest) (*sdk.HealthResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			return &sdk.HealthResponse{Configured: configured}, nil
		},
	}
}

func TestRunPassesAPluginThatKeepsTheContract(t *testing.T) {
	var sent []string
	Run(t, memoryPlugin(&sent), Options{
		Config:        json.RawMessage(`{"ok": true}`),
		InvalidConfig: json.RawMessage(`{"ok": false}`),
		Recipient:     "alice@example.com",
		Delivered: func(t *testing.T, subject string) {
			if len(sent) == 0 || sent[len(sent)-1] != subject {
				t.Errorf("subject %q was not delivered; sent %q", subject, sent)
			}
		},
	})
}

// A plugin of the core alone keeps the contract: Run finds that it lacks
// Render and Probe and checks that it says so. Both ways of lacking them
// are covered: a Go type without the methods (the gRPC server answers
// Unimplemented) and a Fake whose capability fields are nil.
func TestRunPassesAPluginOfTheCoreAlone(t *testing.T) {
	for name, core := range map[string]func(*[]string) sdk.Gateway{
		"a type without the methods": func(sent *[]string) sdk.Gateway { return coreOnly{memoryPlugin(sent)} },
		"a Fake without them": func(sent *[]string) sdk.Gateway {
			f := memoryPlugin(sent)
			f.RenderF, f.ProbeF = nil, nil
			return f
		},
	} {
		t.Run(name, func(t *testing.T) {
			var sent []string
			Run(t, core(&sent), Options{
				Config:        json.RawMessage(`{"ok": true}`),
				InvalidConfig: json.RawMessage(`{"ok": false}`),
				Recipient:     "alice@example.com",
			})
		})
	}
}

// coreOnly hides every method of its plugin but the core.
type coreOnly struct{ sdk.Gateway }

func TestCapabilitiesAPluginLacksAreUnsupported(t *testing.T) {
	t.Parallel()
	var sent []string
	gw := Connect(t, coreOnly{memoryPlugin(&sent)})
	ctx := context.Background()
	if _, err := gw.Render(ctx, &sdk.RenderRequest{}); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Render = %v, want sdk.ErrUnsupported", err)
	}
	if _, err := gw.Probe(ctx, &sdk.ProbeRequest{}); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Probe = %v, want sdk.ErrUnsupported", err)
	}
	// The core still works.
	if _, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "a@example.com", Rendered: &sdk.RenderedMessage{Subject: "s"}}); err != nil {
		t.Errorf("SendMessage: %v", err)
	}
}

// Nil core fields answer zero values.
func TestFakeDefaultsAnswerZeroValues(t *testing.T) {
	t.Parallel()
	gw := Connect(t, &Fake{})
	ctx := context.Background()
	if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{}); err != nil {
		t.Errorf("Configure: %v", err)
	}
	if r, err := gw.IssuePassword(ctx, &sdk.IssuePasswordRequest{}); err != nil || r.Password != "" {
		t.Errorf("IssuePassword = %+v, %v", r, err)
	}
	if h, err := gw.Health(ctx, &sdk.HealthRequest{}); err != nil || h.Configured {
		t.Errorf("Health = %+v, %v", h, err)
	}
	// Without their fields, the capabilities are not offered.
	msg := &sdk.PasswordMessage{Password: "p", ExpiresAt: time.Now().Add(time.Hour)}
	if r, err := gw.Render(ctx, &sdk.RenderRequest{Recipient: "a@example.com", Password: msg}); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Render = %+v, %v; want sdk.ErrUnsupported", r, err)
	}
	if r, err := gw.Probe(ctx, &sdk.ProbeRequest{}); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("Probe = %+v, %v; want sdk.ErrUnsupported", r, err)
	}
}

func TestErrorsCrossTheConnection(t *testing.T) {
	t.Parallel()
	gw := Connect(t, &Fake{SendMessageF: func(context.Context, *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
		return nil, fmt.Errorf("smtp rcpt_to: 450 mailbox busy: %w", sdk.ErrUnavailable)
	}})
	_, err := gw.SendMessage(context.Background(), &sdk.SendMessageRequest{Recipient: "a@example.com", Rendered: &sdk.RenderedMessage{Subject: "s"}})
	if !errors.Is(err, sdk.ErrUnavailable) || err.Error() != "smtp rcpt_to: 450 mailbox busy: temporarily unavailable" {
		t.Errorf("SendMessage = %v, want the plugin's message matching sdk.ErrUnavailable", err)
	}
}

// Every field of a password message reaches the plugin over gRPC, Kratos's
// recovery code and link included.
func TestPasswordMessageCrossesTheConnection(t *testing.T) {
	t.Parallel()
	var got []*sdk.PasswordMessage
	gw := Connect(t, &Fake{
		RenderF: func(_ context.Context, r *sdk.RenderRequest) (*sdk.RenderResponse, error) {
			got = append(got, r.Password)
			return &sdk.RenderResponse{}, nil
		},
		SendMessageF: func(_ context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
			got = append(got, r.Password)
			return &sdk.SendMessageResponse{}, nil
		},
	})
	want := &sdk.PasswordMessage{
		Password:       "Tq8#Lw2@Pw-4711",
		ExpiresAt:      time.Date(2026, time.March, 1, 12, 30, 0, 0, time.UTC),
		LoginURL:       "https://auth.example.com/login",
		IdentityID:     "9f425a8d-7efc-4768-8f23-7647a74fdf13",
		IdentityTraits: json.RawMessage(`{"email":"jane@example.com"}`),
		RecoveryCode:   "482913",
		RecoveryURL:    "https://auth.example.com/self-service/recovery?flow=f&token=t",
	}
	ctx := context.Background()
	if _, err := gw.Render(ctx, &sdk.RenderRequest{Recipient: "jane@example.com", Password: want}); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "jane@example.com", Password: want}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("the plugin got %d password messages, want 2", len(got))
	}
	for _, g := range got {
		if !reflect.DeepEqual(g, want) {
			t.Errorf("the plugin got\n %+v\nwant\n %+v", g, want)
		}
	}
}

// Every field of a notice reaches the plugin over gRPC, through
// SendMessage and Render alike.
func TestNoticeCrossesTheConnection(t *testing.T) {
	t.Parallel()
	var got []*sdk.NoticeMessage
	gw := Connect(t, &Fake{
		RenderF: func(_ context.Context, r *sdk.RenderRequest) (*sdk.RenderResponse, error) {
			got = append(got, r.Notice)
			return &sdk.RenderResponse{}, nil
		},
		SendMessageF: func(_ context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
			got = append(got, r.Notice)
			return &sdk.SendMessageResponse{}, nil
		},
	})
	want := &sdk.NoticeMessage{
		Kind:           sdk.NoticePasswordChanged,
		At:             time.Date(2026, time.March, 1, 12, 30, 0, 0, time.UTC),
		IdentityID:     "9f425a8d-7efc-4768-8f23-7647a74fdf13",
		IdentityTraits: json.RawMessage(`{"email":"jane@example.com"}`),
		LoginURL:       "https://auth.example.com/login",
		SettingsURL:    "https://auth.example.com/settings",
	}
	ctx := context.Background()
	if _, err := gw.Render(ctx, &sdk.RenderRequest{Recipient: "jane@example.com", Notice: want}); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "jane@example.com", Notice: want}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("the plugin got %d notices, want 2", len(got))
	}
	for _, g := range got {
		if !reflect.DeepEqual(g, want) {
			t.Errorf("the plugin got\n %+v\nwant\n %+v", g, want)
		}
	}
}
