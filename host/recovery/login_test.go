package recovery

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Every password the migration hook refuses is logged once: the identity
// id when known, the verdict and why, never the password or the identifier
// (an address). A stray \r from a copy-paste shows as such.
func TestRefusedPasswordIsLogged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		pending    bool
		identifier string
		password   string
		after      time.Duration
		want       map[string]any
	}{
		{"temporary password with a stray carriage return", true, "alice@example.com", "Tmp-Pass-9876-abc\r", time.Minute,
			map[string]any{"identity_id": "id-1", "reason": "wrong_password", "surrounding_whitespace": true}},
		{"wrong password", true, "alice@example.com", "Guess-1234-wrong", time.Minute,
			map[string]any{"identity_id": "id-1", "reason": "wrong_password", "surrounding_whitespace": nil}},
		{"expired temporary password", true, "alice@example.com", "Tmp-Pass-9876-abc", 2 * time.Hour,
			map[string]any{"identity_id": "id-1", "reason": "temporary_password_expired", "expired_at": "2026-11-26T22:00:00Z"}},
		{"no pending reset", false, "alice@example.com", "Guess-1234-wrong", time.Minute,
			map[string]any{"identity_id": "id-1", "reason": "no_pending_reset"}},
		{"unknown identifier", true, "mallory@example.com", "Guess-1234-wrong", time.Minute,
			map[string]any{"identity_id": nil, "reason": "unknown_identifier"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			issuing(f, "Tmp-Pass-9876-abc")
			if tt.pending {
				if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
					t.Fatal(err)
				}
			}
			f.svc.now = func() time.Time { return now.Add(tt.after) }
			f.logs.Reset()
			if got, err := f.svc.CheckPassword(context.Background(), tt.identifier, tt.password, keepPolicy); err != nil || got != NoMatch {
				t.Fatalf("CheckPassword = %q, %v; want no_match", got, err)
			}
			var lines []map[string]any
			for l := range strings.Lines(f.logs.String()) {
				var line map[string]any
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatal(err)
				}
				if line["msg"] == "password refused at login" {
					lines = append(lines, line)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("%d refusal lines, want 1:\n%s", len(lines), f.logs.String())
			}
			want := map[string]any{"event": "login_refused", "verdict": "no_match"}
			for k, v := range tt.want {
				want[k] = v
			}
			for k, v := range want {
				if lines[0][k] != v {
					t.Errorf("%s = %v, want %v:\n%s", k, lines[0][k], v, f.logs.String())
				}
			}
			for _, secret := range []string{strings.TrimSpace(tt.password), tt.identifier} {
				if strings.Contains(f.logs.String(), secret) {
					t.Errorf("the log holds %q:\n%s", secret, f.logs.String())
				}
			}
		})
	}
}

// A password that logs in writes no refusal.
func TestMatchingPasswordIsNotARefusal(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	issuing(f, "Tmp-Pass-9876-abc")
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	if got, err := f.svc.CheckPassword(context.Background(), "alice@example.com", "Tmp-Pass-9876-abc", keepPolicy); err != nil || got != MatchTemporary {
		t.Fatalf("CheckPassword = %q, %v; want temporary", got, err)
	}
	if strings.Contains(f.logs.String(), "login_refused") {
		t.Errorf("a login that worked is logged as refused:\n%s", f.logs.String())
	}
}
