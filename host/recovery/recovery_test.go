package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

// identities is an in-memory Kratos admin API that records the order of calls.
type identities struct {
	byID    map[string]*kratosadmin.Identity
	calls   *[]string
	updates []kratosadmin.PasswordUpdate
	setErr  error
}

func (f *identities) Identity(_ context.Context, id string) (*kratosadmin.Identity, error) {
	*f.calls = append(*f.calls, "get")
	i, ok := f.byID[id]
	if !ok {
		return nil, kratosadmin.ErrNotFound
	}
	return i, nil
}

func (f *identities) SetPassword(_ context.Context, _ *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error {
	*f.calls = append(*f.calls, "set")
	f.updates = append(f.updates, u)
	return f.setErr
}

func (f *identities) RevokeSessions(context.Context, string) error {
	*f.calls = append(*f.calls, "revoke")
	return nil
}

var now = time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC)

type fixture struct {
	svc   *Service
	ids   *identities
	calls []string
	sent  []*sdk.SendMessageRequest
	logs  bytes.Buffer
}

func newFixture(sendErr error) *fixture {
	f := &fixture{}
	f.ids = &identities{calls: &f.calls, byID: map[string]*kratosadmin.Identity{
		"id-1": {
			ID: "id-1", SchemaID: "default", State: "active",
			Traits:            map[string]any{"email": "alice@example.com"},
			MetadataPublic:    map[string]any{"plan": "pro"},
			MetadataAdmin:     map[string]any{"crm_id": 42.0, KeyAdmin: map[string]any{"note": "kept"}},
			RecoveryAddresses: []string{"alice@example.com"},
		},
	}}
	mailer := &sdktest.Fake{
		IssuePasswordF: func(context.Context, *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
			f.calls = append(f.calls, "issue")
			return &sdk.IssuePasswordResponse{Password: "Tmp-Pass-2345-xyz"}, nil
		},
		SendMessageF: func(_ context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
			f.calls = append(f.calls, "send")
			f.sent = append(f.sent, r)
			if sendErr != nil {
				return nil, sendErr
			}
			return &sdk.SendMessageResponse{ServerReply: "250 queued"}, nil
		},
	}
	f.svc = New(f.ids, mailer, func() time.Time { return now }, slog.New(slog.NewJSONHandler(&f.logs, nil)))
	return f
}

var policy = Policy{TTL: time.Hour, RevokeSessions: true, LoginURL: "http://ui/login", KratosTimeout: time.Second, SMTPTimeout: time.Second}

func TestResetWritesBeforeItMails(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	if err := f.svc.Reset(context.Background(), Request{IdentityID: "id-1", Recipient: "Alice@Example.com", Trigger: "self-service"}, policy); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"get", "issue", "set", "revoke", "send"}, f.calls); diff != "" {
		t.Errorf("call order (-want +got):\n%s", diff)
	}
	wantUpdate := kratosadmin.PasswordUpdate{
		Password:       "Tmp-Pass-2345-xyz",
		MetadataPublic: map[string]any{"plan": "pro", KeyChangeRequired: true, KeyExpiresAt: "2026-11-26T22:00:00Z"},
		MetadataAdmin:  map[string]any{"crm_id": 42.0, KeyAdmin: map[string]any{"note": "kept", KeyLastResetAt: "2026-11-26T21:00:00Z"}},
	}
	if diff := cmp.Diff(wantUpdate, f.ids.updates[0]); diff != "" {
		t.Errorf("update (-want +got):\n%s", diff)
	}
	if got := f.ids.byID["id-1"].MetadataPublic; len(got) != 1 {
		t.Errorf("the identity read from Kratos was modified in place: %v", got)
	}
	p := f.sent[0].Password
	if p == nil || p.Password != "Tmp-Pass-2345-xyz" || !p.ExpiresAt.Equal(now.Add(time.Hour)) || p.LoginURL != "http://ui/login" || string(p.IdentityTraits) != `{"email":"alice@example.com"}` {
		t.Errorf("password message = %+v", p)
	}
	if strings.Contains(f.logs.String(), "Tmp-Pass-2345-xyz") {
		t.Errorf("the password reached the log")
	}
}

func TestResetWithoutSessionRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	pol := policy
	pol.RevokeSessions = false
	if err := f.svc.Reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com"}, pol); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"get", "issue", "set", "send"}, f.calls); diff != "" {
		t.Errorf("call order (-want +got):\n%s", diff)
	}
}

func TestResetRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		req       Request
		wantErr   error
		wantCalls []string
	}{
		{"unknown identity", Request{IdentityID: "nobody", Recipient: "alice@example.com"}, kratosadmin.ErrNotFound, []string{"get"}},
		{"recipient not a recovery address", Request{IdentityID: "id-1", Recipient: "eve@example.com"}, ErrRecipientMismatch, []string{"get"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			err := f.svc.Reset(context.Background(), tt.req, policy)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reset = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantCalls, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResetFailuresAreReported(t *testing.T) {
	t.Parallel()
	f := newFixture(fmt.Errorf("smtp connect: refused: %w", sdk.ErrUnavailable))
	err := f.svc.Reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com"}, policy)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "send temporary password mail: smtp connect") {
		t.Fatalf("Reset = %v, want the SMTP stage and sdk.ErrUnavailable", err)
	}

	f = newFixture(nil)
	f.ids.setErr = fmt.Errorf("update identity: %w", kratosadmin.ErrUnavailable)
	err = f.svc.Reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com"}, policy)
	if !errors.Is(err, kratosadmin.ErrUnavailable) {
		t.Fatalf("Reset = %v, want kratosadmin.ErrUnavailable", err)
	}
	if len(f.sent) != 0 {
		t.Errorf("a password that was never set was mailed")
	}
}
