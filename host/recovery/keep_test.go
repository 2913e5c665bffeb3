package recovery

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

// issuing makes the fixture's plugin hand out the given passwords in turn.
func issuing(f *fixture, passwords ...string) {
	f.svc.mail.(*sdktest.Fake).IssuePasswordF = func(context.Context, *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
		pw := passwords[0]
		passwords = passwords[1:]
		return &sdk.IssuePasswordResponse{Password: pw}, nil
	}
}

func alice(key string) Request {
	return Request{IdentityID: "id-1", Recipient: "alice@example.com", Trigger: "self-service", MessageKey: key}
}

func TestKeepCurrentDoesNotTouchThePassword(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"get", "issue", "set", "send", "patch"}, f.calls); diff != "" {
		t.Errorf("calls (-want +got), no revoke while the current password works:\n%s", diff)
	}
	u := f.ids.updates[0]
	if !u.UseMigrationHook || u.Password != "" {
		t.Errorf("update = %+v, want the migration hook and no password", u)
	}
	if diff := cmp.Diff(map[string]any{"plan": "pro"}, u.MetadataPublic); diff != "" {
		t.Errorf("metadata_public changed before the temporary password was used (-want +got):\n%s", diff)
	}
	p, ok := readPending(u.MetadataAdmin)
	if !ok || !p.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("pending = %+v, %v", p, ok)
	}
	keys := mustKeys(cipherKey)
	if hash, err := keys.Open(p.SealedHash, "id-1"); err != nil || string(hash) != currentHash {
		t.Errorf("sealed hash opens to %q, %v; want the current hash", hash, err)
	}
	if ok, _ := keys.Verify(p.TempMAC, "Tmp-Pass-2345-xyz", "id-1"); !ok {
		t.Errorf("the temporary password's MAC does not verify")
	}
	for _, secret := range []string{currentHash, "Tmp-Pass-2345-xyz"} {
		if strings.Contains(f.logs.String(), secret) {
			t.Errorf("a secret reached the log")
		}
	}
}

func TestCheckPassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		password    string
		after       time.Duration
		want        Verdict
		wantFlag    bool
		wantPending bool
		wantRevoke  bool
	}{
		{"fresh temporary password", "Tmp-1", time.Minute, MatchTemporary, true, false, true},
		{"current password", currentPassword, time.Minute, MatchCurrent, false, false, false},
		{"current password after expiry", currentPassword, 2 * time.Hour, MatchCurrent, false, false, false},
		{"expired temporary password", "Tmp-1", 2 * time.Hour, NoMatch, false, true, false},
		{"wrong password", "Guess-123", time.Minute, NoMatch, false, true, false},
		{"empty password", "", time.Minute, NoMatch, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			issuing(f, "Tmp-1")
			if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
				t.Fatal(err)
			}
			f.svc.now = func() time.Time { return now.Add(tt.after) }
			f.calls = nil
			got, err := f.svc.CheckPassword(context.Background(), "alice@example.com", tt.password, keepPolicy)
			if err != nil || got != tt.want {
				t.Fatalf("CheckPassword = %q, %v; want %q", got, err, tt.want)
			}
			stored := f.ids.byID["id-1"]
			if flag := stored.MetadataPublic[KeyChangeRequired] == true; flag != tt.wantFlag {
				t.Errorf("password_change_required = %v, want %v (metadata_public %v)", flag, tt.wantFlag, stored.MetadataPublic)
			}
			if tt.wantFlag && stored.MetadataPublic[KeyExpiresAt] != now.Add(time.Hour).Format(time.RFC3339) || stored.MetadataPublic["plan"] != "pro" {
				t.Errorf("metadata_public = %v, want the expiry with plan kept", stored.MetadataPublic)
			}
			if _, pend := readPending(stored.MetadataAdmin); pend != tt.wantPending {
				t.Errorf("pending after the check = %v, want %v", pend, tt.wantPending)
			}
			revoked := strings.Contains(strings.Join(f.calls, ","), "revoke")
			if revoked != tt.wantRevoke {
				t.Errorf("sessions revoked = %v, want %v (calls %v)", revoked, tt.wantRevoke, f.calls)
			}
		})
	}
}

// The last mail wins: a second recovery replaces the pending temporary
// password and keeps the sealed current hash, which Kratos no longer has.
func TestSecondRecoveryReplacesThePendingPassword(t *testing.T) {
	t.Parallel()
	twoRecoveries := func(t *testing.T) *fixture {
		f := newFixture(nil)
		issuing(f, "Tmp-1", "Tmp-2")
		pol := keepPolicy
		pol.Cooldown = 0
		for _, key := range []string{"k1", "k2"} {
			if _, err := f.reset(context.Background(), alice(key), pol); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	f := twoRecoveries(t)
	first, _ := readPending(f.ids.updates[0].MetadataAdmin)
	second, _ := readPending(f.ids.updates[1].MetadataAdmin)
	if first.SealedHash != second.SealedHash {
		t.Errorf("the second recovery sealed something else than the first kept")
	}
	for _, c := range []struct {
		password string
		want     Verdict
	}{{"Tmp-1", NoMatch}, {"Tmp-2", MatchTemporary}, {currentPassword, MatchCurrent}} {
		t.Run(c.password, func(t *testing.T) {
			t.Parallel()
			got, err := twoRecoveries(t).svc.CheckPassword(context.Background(), "alice@example.com", c.password, keepPolicy)
			if err != nil || got != c.want {
				t.Errorf("CheckPassword(%s) = %q, %v; want %q", c.password, got, err, c.want)
			}
		})
	}
}

func TestKeepCurrentFallsBackToReplacement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(i *kratosadmin.Identity)
		why  string
	}{
		{"imported pbkdf2 hash", func(i *kratosadmin.Identity) { i.PasswordHash = "$pbkdf2-sha256$i=1000,l=32$c2FsdA$aGFzaA" }, "neither bcrypt nor argon2id"},
		{"no password", func(i *kratosadmin.Identity) { i.PasswordHash = "" }, "no password to keep"},
		{"someone else's migration", func(i *kratosadmin.Identity) { i.PasswordHash, i.UsesMigrationHook = "", true }, "already uses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			tt.edit(f.ids.byID["id-1"])
			if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
				t.Fatal(err)
			}
			u := f.ids.updates[0]
			if u.UseMigrationHook || u.Password == "" || u.MetadataPublic[KeyChangeRequired] != true {
				t.Errorf("update = %+v, want an immediate replacement with the flag", u)
			}
			if !strings.Contains(f.logs.String(), tt.why) {
				t.Errorf("the log does not say why (%q):\n%s", tt.why, f.logs.String())
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	const newKey = "fedcba9876543210fedcba9876543210-new"
	tests := []struct {
		name    string
		keys    []string
		current Verdict
		temp    Verdict
	}{
		{"old key still listed", []string{newKey, cipherKey}, MatchCurrent, MatchTemporary},
		// Dropping a key before its pending resets expire voids them: the
		// log says so, and a new recovery issues a password that works.
		{"old key dropped", []string{newKey}, NoMatch, NoMatch},
	}
	for _, tt := range tests {
		for _, pw := range []string{currentPassword, "Tmp-1"} {
			t.Run(tt.name+"/"+pw, func(t *testing.T) {
				t.Parallel()
				f := newFixture(nil)
				issuing(f, "Tmp-1")
				if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
					t.Fatal(err)
				}
				rotated := keepPolicy
				rotated.Keys = mustKeys(tt.keys...)
				want := tt.current
				if pw == "Tmp-1" {
					want = tt.temp
				}
				got, err := f.svc.CheckPassword(context.Background(), "alice@example.com", pw, rotated)
				if err != nil || got != want {
					t.Errorf("CheckPassword = %q, %v; want %q", got, err, want)
				}
				if len(tt.keys) == 1 && !strings.Contains(f.logs.String(), "no secrets.cipher key opens") {
					t.Errorf("the unopenable pending reset was not logged")
				}
			})
		}
	}
}

// A tampered sealed hash falls back to "only the temporary password works".
func TestTamperedSealedHash(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	issuing(f, "Tmp-1", "Tmp-2")
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	admin := f.ids.byID["id-1"].MetadataAdmin
	p := asMap(asMap(admin[KeyAdmin])[KeyPending])
	sealed := p[KeySealedHash].(string)
	p[KeySealedHash] = sealed[:len(sealed)-4] + "AAAA"
	if got, _ := f.svc.CheckPassword(context.Background(), "alice@example.com", currentPassword, keepPolicy); got != NoMatch {
		t.Errorf("current password with a tampered seal = %q, want NoMatch", got)
	}
	if got, _ := f.svc.CheckPassword(context.Background(), "alice@example.com", "Tmp-1", keepPolicy); got != MatchTemporary {
		t.Errorf("temporary password with a tampered seal = %q, want MatchTemporary", got)
	}
}

// Every error path answers NoMatch.
func TestCheckPasswordErrorPathsNeverMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(f *fixture)
		user  string
	}{
		{"unknown identifier", func(*fixture) {}, "nobody@example.com"},
		{"no pending reset", func(*fixture) {}, "alice@example.com"},
		{"no keys configured", func(f *fixture) { f.noKeys = true }, "alice@example.com"},
		{"Kratos fails to record the use", func(f *fixture) { f.svc.ids = failingPatch{f.ids} }, "alice@example.com"},
		{"Kratos unreachable", func(f *fixture) { f.svc.ids = unreachable{f.ids} }, "alice@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			issuing(f, "Tmp-1")
			if tt.name != "no pending reset" {
				if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
					t.Fatal(err)
				}
			}
			tt.setup(f)
			pol := keepPolicy
			if f.noKeys {
				pol.Keys = nil
			}
			for _, pw := range []string{"Tmp-1", currentPassword} {
				if got, _ := f.svc.CheckPassword(context.Background(), tt.user, pw, pol); got != NoMatch {
					t.Errorf("CheckPassword(%s) = %q, want NoMatch", pw, got)
				}
			}
		})
	}
}

type failingPatch struct{ *identities }

func (failingPatch) Patch(context.Context, string, ...kratosadmin.Op) error {
	return kratosadmin.ErrUnavailable
}

type unreachable struct{ *identities }

func (unreachable) FindByIdentifier(context.Context, string) (*kratosadmin.Identity, error) {
	return nil, errors.Join(kratosadmin.ErrUnavailable, errors.New("connection refused"))
}

func TestKeepCurrentWithoutKeysIsAnError(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	pol := keepPolicy
	pol.Keys = nil
	_, err := f.reset(context.Background(), alice("k1"), pol)
	if err == nil || !strings.Contains(err.Error(), "secrets.cipher") {
		t.Fatalf("Reset = %v, want an error naming secrets.cipher", err)
	}
	if len(f.ids.updates) != 0 {
		t.Errorf("the password was changed")
	}
}
