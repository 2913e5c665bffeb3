package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratospublic"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
)

var testNow = time.Date(2026, 11, 26, 21, 30, 0, 0, time.UTC)

// Session makes the recorder the gate's session source: the cookie or token
// names the session the test wants.
func (r *recorder) Session(_ context.Context, cookie, token string) (*kratospublic.Session, error) {
	switch cookie + token {
	case "":
		return nil, kratospublic.ErrNoSession
	case "ory_kratos_session=must-change", "tok-must-change":
		return &kratospublic.Session{IdentityID: "id-1", MetadataPublic: map[string]any{"password_change_required": true}}, nil
	case "ory_kratos_session=fine", "tok-fine":
		return &kratospublic.Session{IdentityID: "id-2", MetadataPublic: map[string]any{"plan": "pro"}}, nil
	case "kratos-down":
		return nil, errors.New("dial tcp: connection refused")
	default:
		return nil, kratospublic.ErrNoSession
	}
}

// loginBody is the captured Kratos v1.3.1 login hook body with its
// metadata_public replaced.
func loginBody(t *testing.T, meta any) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/hook-login-after-password.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["identity"].(map[string]any)["metadata_public"] = meta
	out, _ := json.Marshal(m)
	return out
}

func hook(h http.Handler, path, auth string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestLoginHook(t *testing.T) {
	t.Parallel()
	fresh := testNow.Add(time.Minute).Format(time.RFC3339)
	expired := testNow.Add(-time.Second).Format(time.RFC3339)
	tests := []struct {
		name       string
		auth       string
		body       func(t *testing.T) []byte
		wantStatus int
		wantBody   string
	}{
		{"no flag", "Bearer " + apiKey, func(t *testing.T) []byte { return loginBody(t, nil) }, 200, `"allowed"`},
		{"fresh temporary password", "Bearer " + apiKey, func(t *testing.T) []byte {
			return loginBody(t, map[string]any{"password_change_required": true, "temporary_password_expires_at": fresh})
		}, 200, `"password_change_required":"true"`},
		{"expired temporary password", "Bearer " + apiKey, func(t *testing.T) []byte {
			return loginBody(t, map[string]any{"password_change_required": true, "temporary_password_expires_at": expired})
		}, 403, `{"messages":[{"instance_ptr":"#/","messages":[{"id":4000001,"text":"Your temporary password has expired. Request a new one with \"Forgot password\".","type":"error"}]}]}`},
		{"expiry exactly now", "Bearer " + apiKey, func(t *testing.T) []byte {
			return loginBody(t, map[string]any{"password_change_required": true, "temporary_password_expires_at": testNow.Format(time.RFC3339)})
		}, 403, "expired"},
		{"no API key", "", func(t *testing.T) []byte { return loginBody(t, nil) }, 401, "API key"},
		// Fail open: a body the gateway cannot read never blocks a login.
		{"not JSON", "Bearer " + apiKey, func(*testing.T) []byte { return []byte("nope") }, 200, `"warning"`},
		{"no identity", "Bearer " + apiKey, func(*testing.T) []byte { return []byte(`{"flow_id":"x"}`) }, 200, "no identity"},
		{"metadata not an object", "Bearer " + apiKey, func(t *testing.T) []byte { return loginBody(t, []int{1}) }, 200, "allowed"},
		{"flag without expiry", "Bearer " + apiKey, func(t *testing.T) []byte {
			return loginBody(t, map[string]any{"password_change_required": true})
		}, 200, "allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newServer(t, true, &recorder{})
			w := hook(h, "/hooks/login", tt.auth, tt.body(t))
			if w.Code != tt.wantStatus || !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Fatalf("HTTP %d %s, want %d containing %s", w.Code, w.Body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestSettingsHookClearsOnlyTheFlag(t *testing.T) {
	t.Parallel()
	pendingCleared := map[string]any{"crm": 1, "email_gateway": map[string]any{"settled": "changed"}}
	tests := []struct {
		name       string
		body       string
		wantStatus int
		want       string
		changed    map[string]any // what PasswordChanged answers
		changedErr error
	}{
		{
			name:       "pending reset cleared in metadata_admin",
			body:       `{"identity":{"id":"id-1","metadata_public":null}}`,
			changed:    pendingCleared,
			wantStatus: 200,
			want:       `{"identity":{"metadata_admin":{"crm":1,"email_gateway":{"settled":"changed"}}}}`,
		},
		{
			name:       "flag and pending reset cleared together",
			body:       `{"identity":{"id":"id-1","metadata_public":{"password_change_required":true,"plan":"pro"}}}`,
			changed:    pendingCleared,
			wantStatus: 200,
			want:       `{"identity":{"metadata_public":{"plan":"pro"},"metadata_admin":{"crm":1,"email_gateway":{"settled":"changed"}}}}`,
		},
		{
			// Kratos unreachable: the user's new password still goes in.
			name:       "metadata_admin unreadable",
			body:       `{"identity":{"id":"id-1","metadata_public":{"password_change_required":true}}}`,
			changedErr: errors.New("get identity: kratos admin API unavailable"),
			wantStatus: 200,
			want:       `{"identity":{"metadata_public":{}}}`,
		},
		{
			name:       "flag cleared, other keys kept",
			body:       `{"identity":{"id":"id-1","metadata_public":{"password_change_required":true,"temporary_password_expires_at":"2026-11-26T22:00:00Z","plan":"pro"}}}`,
			wantStatus: 200,
			want:       `{"identity":{"metadata_public":{"plan":"pro"}}}`,
		},
		{
			name:       "flag cleared, nothing else",
			body:       `{"identity":{"id":"id-1","metadata_public":{"password_change_required":true,"temporary_password_expires_at":"2026-11-26T22:00:00Z"}}}`,
			wantStatus: 200,
			want:       `{"identity":{"metadata_public":{}}}`,
		},
		{
			name:       "no flag: no change",
			body:       `{"identity":{"id":"id-1","metadata_public":null}}`,
			wantStatus: 200,
			want:       `{}`,
		},
		{"no identity", `{"flow":{}}`, 400, "no identity", nil, nil},
		{"metadata missing", `{"identity":{"id":"id-1"}}`, 400, "metadata_public is missing", nil, nil},
		{"metadata not an object", `{"identity":{"id":"id-1","metadata_public":"x"}}`, 400, "not a JSON object", nil, nil},
		{"wrong type", `{"identity":{"id":7}}`, 400, "field identity.id must be a JSON string", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newServer(t, true, &recorder{changed: tt.changed, changedErr: tt.changedErr})
			w := hook(h, "/hooks/settings", "Bearer "+apiKey, []byte(tt.body))
			if w.Code != tt.wantStatus {
				t.Fatalf("HTTP %d %s, want %d", w.Code, w.Body, tt.wantStatus)
			}
			got := strings.TrimSpace(w.Body.String())
			if tt.wantStatus == 200 {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("reply (-want +got):\n%s", diff)
				}
			} else if !strings.Contains(got, tt.want) {
				t.Errorf("reply %s does not say %q", got, tt.want)
			}
		})
	}
	h, _ := newServer(t, true, &recorder{})
	if w := hook(h, "/hooks/settings", "", []byte(`{}`)); w.Code != http.StatusUnauthorized {
		t.Errorf("settings hook without the key: HTTP %d, want 401", w.Code)
	}
}

// The migration hook answers password_match only for a Match verdict; every
// other path, errors included, refuses.
func TestPasswordHook(t *testing.T) {
	t.Parallel()
	ok := `{"identifier":"alice@example.com","password":"x"}`
	tests := []struct {
		name       string
		auth       string
		body       string
		verdict    recovery.Verdict
		checkErr   error
		wantStatus int
		wantChecks int
	}{
		{"temporary password", "Bearer " + apiKey, ok, recovery.MatchTemporary, nil, 200, 1},
		{"current password", "Bearer " + apiKey, ok, recovery.MatchCurrent, nil, 200, 1},
		{"wrong password", "Bearer " + apiKey, ok, recovery.NoMatch, nil, 403, 1},
		{"unknown verdict", "Bearer " + apiKey, ok, recovery.Verdict("maybe"), nil, 403, 1},
		{"check failed", "Bearer " + apiKey, ok, recovery.MatchTemporary, errors.New("kratos down"), 503, 1},
		{"no API key", "", ok, recovery.MatchTemporary, nil, 401, 0},
		{"wrong API key", "Bearer nope", ok, recovery.MatchTemporary, nil, 401, 0},
		{"not JSON", "Bearer " + apiKey, "identifier=alice", recovery.MatchTemporary, nil, 400, 0},
		{"no password", "Bearer " + apiKey, `{"identifier":"alice@example.com"}`, recovery.MatchTemporary, nil, 400, 0},
		{"no identifier", "Bearer " + apiKey, `{"password":"x"}`, recovery.MatchTemporary, nil, 400, 0},
		{"password not a string", "Bearer " + apiKey, `{"identifier":"a","password":1}`, recovery.MatchTemporary, nil, 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{verdict: tt.verdict, checkErr: tt.checkErr}
			h, logs := newServer(t, true, rec)
			w := hook(h, "/hooks/password", tt.auth, []byte(tt.body))
			if w.Code != tt.wantStatus || len(rec.checks) != tt.wantChecks {
				t.Fatalf("HTTP %d after %d checks, want %d after %d: %s", w.Code, len(rec.checks), tt.wantStatus, tt.wantChecks, w.Body)
			}
			if match := strings.Contains(w.Body.String(), "password_match"); match != (tt.wantStatus == 200) {
				t.Errorf("body %s: password_match present = %v, want %v", w.Body, match, tt.wantStatus == 200)
			}
			if strings.Contains(logs.String(), `"x"`) {
				t.Errorf("the password reached the log")
			}
		})
	}
}
