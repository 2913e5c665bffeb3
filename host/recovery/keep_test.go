package recovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

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
	return Request{IdentityID: "id-1", Recipient: "alice@example.com", Trigger: "self-service", Message: key}
}

func TestKeepCurrentDoesNotTouchThePassword(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"get", "issue", "render", "set", "send", "patch"}, f.calls); diff != "" {
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

// When the current password cannot be kept safely, a stranger's recovery
// changes nothing: Kratos's own message goes out instead.
func TestKeepCurrentOrKratosMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		edit   func(i *kratosadmin.Identity)
		reason string // empty: the reset goes ahead
	}{
		{"bcrypt", func(*kratosadmin.Identity) {}, ""},
		{"imported md5 hash", func(i *kratosadmin.Identity) { i.PasswordHash = "$md5$CY9rzUYh03PK3k6DJie09g==" }, ReasonUnverifiableHash},
		{"imported salted sha1 hash", func(i *kratosadmin.Identity) { i.PasswordHash = "{SSHA}JFZFs0oHzxbMwkSJmYVeI8MnTDy/276a" }, ReasonUnverifiableHash},
		{"someone else's migration", func(i *kratosadmin.Identity) { i.PasswordHash, i.UsesMigrationHook = "", true }, ReasonForeignMigrationHook},
		{"no password", func(i *kratosadmin.Identity) { i.PasswordHash = "" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			tt.edit(f.ids.byID["id-1"])
			before := *f.ids.byID["id-1"]
			res, err := f.resetResult(context.Background(), alice("k1"), keepPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if tt.reason != "" {
				if res.Outcome != OutcomeKratosMessage || res.Reason != tt.reason {
					t.Fatalf("Reset = %+v, want Kratos's message because %s", res, tt.reason)
				}
				if diff := cmp.Diff([]string{"get"}, f.calls); diff != "" {
					t.Errorf("calls (-want +got): nothing may change, not even a password be issued:\n%s", diff)
				}
				if diff := cmp.Diff(before, *f.ids.byID["id-1"]); diff != "" {
					t.Errorf("the identity changed (-before +after):\n%s", diff)
				}
				if !strings.Contains(f.logs.String(), tt.reason) {
					t.Errorf("the log does not say why (%q):\n%s", tt.reason, f.logs.String())
				}
				return
			}
			u := f.ids.updates[0]
			if res.Outcome != OutcomeSent || !u.UseMigrationHook || u.Password != "" || u.MetadataPublic[KeyChangeRequired] != nil {
				t.Errorf("Reset = %+v, update = %+v; want the migration hook, no password, no flag", res, u)
			}
			if strings.Contains(strings.Join(f.calls, ","), "revoke") {
				t.Errorf("sessions ended before the temporary password was used: %v", f.calls)
			}
		})
	}
}

// An identity without a password (code, OIDC or passkey sign-in): the
// temporary password works through the migration hook, nothing else does.
func TestNoPasswordPendingReset(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		password string
		after    time.Duration
		want     Verdict
	}{{"Tmp-1", time.Minute, MatchTemporary}, {"Tmp-1", 2 * time.Hour, NoMatch}, {"", time.Minute, NoMatch}, {currentPassword, time.Minute, NoMatch}} {
		t.Run(fmt.Sprintf("%s after %s", c.password, c.after), func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			f.ids.byID["id-1"].PasswordHash = ""
			issuing(f, "Tmp-1")
			if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
				t.Fatal(err)
			}
			if p, _ := readPending(f.ids.byID["id-1"].MetadataAdmin); p.SealedHash != "" {
				t.Fatalf("pending = %+v, want nothing sealed", p)
			}
			f.svc.now = func() time.Time { return now.Add(c.after) }
			got, err := f.svc.CheckPassword(context.Background(), "alice@example.com", c.password, keepPolicy)
			if err != nil || got != c.want {
				t.Errorf("CheckPassword = %q, %v; want %q", got, err, c.want)
			}
			if strings.Contains(f.logs.String(), "no secrets.cipher key opens") {
				t.Errorf("an identity without a password was logged as an unopenable seal")
			}
		})
	}
}

// kratosStores is Kratos storing a password of its own (settings flow,
// admin PUT, a login that settled the reset): the credential leaves the
// migration hook, and metadata_admin is left as it was.
func kratosStores(f *fixture, password string) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), 4)
	if err != nil {
		panic(err)
	}
	i := f.ids.byID["id-1"]
	i.PasswordHash, i.UsesMigrationHook = string(hash), false
}

// A password changed outside the gateway while a reset was pending is the
// current one: the next recovery seals it, not the one sealed before.
func TestPasswordChangedWhilePendingIsTheCurrentOne(t *testing.T) {
	t.Parallel()
	const changed = "Changed-Elsewhere-42"
	for _, c := range []struct {
		password string
		want     Verdict
	}{{currentPassword, NoMatch}, {changed, MatchCurrent}, {"Tmp-2", MatchTemporary}, {"Tmp-1", NoMatch}} {
		t.Run(c.password, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			issuing(f, "Tmp-1", "Tmp-2")
			pol := keepPolicy
			pol.Cooldown = time.Hour
			if _, err := f.reset(context.Background(), alice("k1"), pol); err != nil {
				t.Fatal(err)
			}
			kratosStores(f, changed)
			// Inside the cooldown too: the pending reset no longer logs in.
			res, err := f.resetResult(context.Background(), alice("k2"), pol)
			if err != nil || res.Outcome != OutcomeSent {
				t.Fatalf("second Reset = %+v, %v; want sent", res, err)
			}
			if !strings.Contains(f.logs.String(), `"last_reset":"superseded"`) {
				t.Errorf("the log does not say the pending reset was superseded:\n%s", f.logs.String())
			}
			got, err := f.svc.CheckPassword(context.Background(), "alice@example.com", c.password, pol)
			if err != nil || got != c.want {
				t.Errorf("CheckPassword = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// While Kratos holds no hash of its own, an expired pending reset still
// holds the current password: a new recovery keeps it.
func TestExpiredPendingKeepsTheSealedPassword(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	issuing(f, "Tmp-1", "Tmp-2")
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	f.svc.now = func() time.Time { return now.Add(2 * time.Hour) }
	if _, err := f.reset(context.Background(), alice("k2"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	if got, err := f.svc.CheckPassword(context.Background(), "alice@example.com", currentPassword, keepPolicy); err != nil || got != MatchCurrent {
		t.Errorf("current password after an expired and a new reset = %q, %v; want MatchCurrent", got, err)
	}
}

// A pending reset whose seal no configured key opens cannot say what the
// current password is: the next recovery is left to Kratos.
func TestUnreadableSealLeavesRecoveryToKratos(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	rotated := keepPolicy
	rotated.Keys = mustKeys("fedcba9876543210fedcba9876543210-new")
	updates := len(f.ids.updates)
	res, err := f.resetResult(context.Background(), alice("k2"), rotated)
	if err != nil || res.Outcome != OutcomeKratosMessage || res.Reason != ReasonSealUnreadable {
		t.Fatalf("Reset = %+v, %v; want Kratos's message (%s)", res, err, ReasonSealUnreadable)
	}
	if len(f.ids.updates) != updates {
		t.Errorf("the identity was changed")
	}
}

// Only a reset whose password still logs in holds the cooldown.
func TestCooldownHeldOnlyByAUsableReset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		between func(t *testing.T, f *fixture)
		ttl     time.Duration
		want    Outcome
		logs    string
	}{
		{"pending and usable", func(*testing.T, *fixture) {}, time.Hour, OutcomeCooldown, ReasonPending},
		{"void: the current password was used", func(t *testing.T, f *fixture) {
			if v, err := f.svc.CheckPassword(context.Background(), "alice@example.com", currentPassword, keepPolicy); v != MatchCurrent {
				t.Fatalf("CheckPassword = %q, %v", v, err)
			}
			kratosStores(f, currentPassword) // Kratos stores the hash that matched
		}, time.Hour, OutcomeSent, `"last_reset":"void"`},
		{"used: the temporary password logs in until changed", func(t *testing.T, f *fixture) {
			if v, err := f.svc.CheckPassword(context.Background(), "alice@example.com", "Tmp-1", keepPolicy); v != MatchTemporary {
				t.Fatalf("CheckPassword = %q, %v", v, err)
			}
			kratosStores(f, "Tmp-1")
		}, time.Hour, OutcomeCooldown, ReasonPending},
		{"expired", func(*testing.T, *fixture) {}, 10 * time.Second, OutcomeSent, `"last_reset":"expired"`},
		{"changed in the settings flow", func(t *testing.T, f *fixture) {
			admin, err := f.svc.PasswordChanged(context.Background(), "id-1", keepPolicy)
			if err != nil || admin == nil {
				t.Fatalf("PasswordChanged = %v, %v", admin, err)
			}
			kratosStores(f, "Changed-Elsewhere-42")
			f.ids.byID["id-1"].MetadataAdmin = admin
		}, time.Hour, OutcomeSent, `"last_reset":"changed"`},
		{"changed without the settings hook", func(_ *testing.T, f *fixture) { kratosStores(f, "Changed-Elsewhere-42") }, time.Hour, OutcomeSent, `"last_reset":"superseded"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			issuing(f, "Tmp-1", "Tmp-2")
			pol := keepPolicy
			pol.Cooldown, pol.TTL = time.Minute, tt.ttl
			if _, err := f.reset(context.Background(), alice("k1"), pol); err != nil {
				t.Fatal(err)
			}
			tt.between(t, f)
			f.svc.now = func() time.Time { return now.Add(30 * time.Second) }
			res, err := f.resetResult(context.Background(), alice("k2"), pol)
			if err != nil || res.Outcome != tt.want {
				t.Fatalf("second Reset = %+v, %v; want %q", res, err, tt.want)
			}
			if !strings.Contains(f.logs.String(), tt.logs) {
				t.Errorf("the log does not say %s:\n%s", tt.logs, f.logs.String())
			}
		})
	}
}

// The settings hook clears a pending reset and keeps everything else of
// metadata_admin; with nothing pending it changes nothing.
func TestPasswordChangedClearsThePendingReset(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	if admin, err := f.svc.PasswordChanged(context.Background(), "id-1", keepPolicy); err != nil || admin != nil {
		t.Fatalf("PasswordChanged without a pending reset = %v, %v; want nil", admin, err)
	}
	if _, err := f.reset(context.Background(), alice("k1"), keepPolicy); err != nil {
		t.Fatal(err)
	}
	admin, err := f.svc.PasswordChanged(context.Background(), "id-1", keepPolicy)
	if err != nil {
		t.Fatal(err)
	}
	state := asMap(admin[KeyAdmin])
	if _, ok := state[KeyPending]; ok || state[KeySettled] != settledChanged || state["note"] != "kept" || admin["crm_id"] != 42.0 {
		t.Errorf("metadata_admin = %v, want the pending reset gone, settled=changed and everything else kept", admin)
	}
	if _, err := f.svc.PasswordChanged(context.Background(), "nobody", keepPolicy); !errors.Is(err, kratosadmin.ErrNotFound) {
		t.Errorf("PasswordChanged of an unknown identity = %v, want ErrNotFound", err)
	}
}

// A mail that cannot be built changes nothing, and the error holds no
// secret.
func TestRenderFailureChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	f.svc.mail.(*sdktest.Fake).RenderF = func(context.Context, *sdk.RenderRequest) (*sdk.RenderResponse, error) {
		return nil, fmt.Errorf("%w: template.subject: the rendered subject contains a line break", sdk.ErrInvalidArgument)
	}
	before := *f.ids.byID["id-1"]
	_, err := f.reset(context.Background(), alice("k1"), keepPolicy)
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("Reset = %v, want a rendering error that says nothing changed", err)
	}
	if strings.Contains(err.Error(), "Tmp-Pass-2345-xyz") || strings.Contains(f.logs.String(), "Tmp-Pass-2345-xyz") {
		t.Errorf("the temporary password reached the error or the log")
	}
	if len(f.ids.updates) != 0 || len(f.sent) != 0 || !cmp.Equal(before, *f.ids.byID["id-1"]) {
		t.Errorf("a mail that cannot be built changed the identity or was sent")
	}
}

// A plugin without the Render capability still resets: the check is
// skipped (said once in the log), the mail goes out and nothing else
// changes in the reset.
func TestResetWithAPluginThatCannotRender(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	f.svc.mail.(*sdktest.Fake).RenderF = nil // answers sdk.ErrUnsupported
	for _, key := range []string{"k1", "k2"} {
		f.calls = nil
		out, err := f.reset(context.Background(), alice(key), keepPolicy)
		if err != nil || out != OutcomeSent {
			t.Fatalf("Reset = %q, %v; want sent without the rendering check", out, err)
		}
		if diff := cmp.Diff([]string{"get", "issue", "set", "send", "patch"}, f.calls); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
	}
	if n := strings.Count(f.logs.String(), "does not offer Render"); n != 1 {
		t.Errorf("the skipped check is logged %d times, want once:\n%s", n, f.logs.String())
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

func TestResetWithoutKeysIsAnError(t *testing.T) {
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

// While the migration hook is unproven, a self-service recovery changes
// nothing and is left to Kratos; an admin reset, which needs no hook, goes
// ahead.
func TestUnprovenHookLeavesSelfServiceToKratos(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	pol := keepPolicy
	pol.HookUnproven = "password migration hook: HTTP 500"
	before := *f.ids.byID["id-1"]
	res, err := f.resetResult(context.Background(), alice("k1"), pol)
	if err != nil || res.Outcome != OutcomeKratosMessage || res.Reason != ReasonWiringUnverified {
		t.Fatalf("Reset = %+v, %v; want Kratos's message (%s)", res, err, ReasonWiringUnverified)
	}
	if diff := cmp.Diff(before, *f.ids.byID["id-1"]); diff != "" || len(f.sent) != 0 {
		t.Errorf("the identity changed or a mail went out:\n%s", diff)
	}
	admin := policy
	admin.HookUnproven = pol.HookUnproven
	if res, err := f.resetResult(context.Background(), Request{IdentityID: "id-1", Trigger: "admin"}, admin); err != nil || res.Outcome != OutcomeSent {
		t.Errorf("admin reset while unproven = %+v, %v; want sent", res, err)
	}
}
