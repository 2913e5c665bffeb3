package httpapi

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/metrics"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
)

const adminKey = "admin-api-key-9876543210"

// cooldownResetter answers every reset with the cooldown outcome.
type cooldownResetter struct{ recorder }

func (c *cooldownResetter) Reset(context.Context, recovery.Request, recovery.Policy) (recovery.Result, error) {
	return recovery.Result{Outcome: recovery.OutcomeCooldown, Reason: recovery.ReasonPending}, nil
}

func adminServer(rec Resetter) http.Handler {
	cfg := testConfig(true)
	cfg.Admin = config.Admin{Listen: "127.0.0.1:0", APIKey: adminKey}
	m := metrics.New(func() int { return 0 })
	return New(Deps{Config: func() *config.Config { return cfg }, Reset: rec, Observer: m, Metrics: m.Handler(),
		Now: time.Now, Log: discard()}).AdminHandler()
}

func adminPost(h http.Handler, auth, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewBufferString(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestAdminReset(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	h := adminServer(rec)
	w := adminPost(h, "Bearer "+adminKey, "/admin/identities/id-7/reset", `{"recipient":"bob@example.com"}`)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"outcome":"sent"`) {
		t.Fatalf("HTTP %d %s", w.Code, w.Body)
	}
	want := []recovery.Request{{IdentityID: "id-7", Recipient: "bob@example.com", Trigger: "admin-api"}}
	if diff := cmp.Diff(want, rec.resets); diff != "" {
		t.Errorf("reset (-want +got):\n%s", diff)
	}
	if p := rec.policies[0]; p.KeepCurrent || !p.RevokeSessions {
		t.Errorf("policy = %+v, want the password replaced at once and sessions ended", p)
	}
	// No body: the first recovery address.
	if w := adminPost(h, "Bearer "+adminKey, "/admin/identities/id-8/reset", ""); w.Code != http.StatusOK || rec.resets[1].Recipient != "" {
		t.Errorf("reset without a body: HTTP %d, recipient %q", w.Code, rec.resets[1].Recipient)
	}
}

func TestAdminResetRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		auth   string
		path   string
		body   string
		status int
	}{
		{"no key", "", "/admin/identities/id-1/reset", "", 401},
		{"Kratos's webhook key", "Bearer " + apiKey, "/admin/identities/id-1/reset", "", 401},
		{"bad body", "Bearer " + adminKey, "/admin/identities/id-1/reset", "{", 400},
		{"wrong path", "Bearer " + adminKey, "/admin/identities/id-1", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			w := adminPost(adminServer(rec), tt.auth, tt.path, tt.body)
			if w.Code != tt.status || len(rec.resets) != 0 {
				t.Fatalf("HTTP %d after %d resets, want %d and none", w.Code, len(rec.resets), tt.status)
			}
		})
	}
	w := adminPost(adminServer(&cooldownResetter{}), "Bearer "+adminKey, "/admin/identities/id-1/reset", "")
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "cooldown") {
		t.Errorf("reset inside the cooldown: HTTP %d %s, want 409", w.Code, w.Body)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
