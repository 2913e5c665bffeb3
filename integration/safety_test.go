package integration

import (
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The journeys of issue 12 against real Kratos: the states in which a
// stranger's recovery request, or a password changed elsewhere, could take
// over, lock out or log out a user.

const changedPassword = "Changed-Elsewhere-Pass-42"

// identityState is everything a refused or left-alone recovery must not
// change: the password credential, both metadata and the sessions.
type identityState struct {
	PasswordConfig map[string]any
	MetadataPublic map[string]any
	MetadataAdmin  map[string]any
	Sessions       []string
}

func stateOf(t *testing.T, id string) identityState {
	t.Helper()
	var ident struct {
		Credentials map[string]struct {
			Config map[string]any `json:"config"`
		} `json:"credentials"`
		MetadataPublic map[string]any `json:"metadata_public"`
		MetadataAdmin  map[string]any `json:"metadata_admin"`
	}
	if status := call(t, "GET", env.kratosAdmin+"/admin/identities/"+id+"?include_credential=password", nil, nil, &ident); status != http.StatusOK {
		t.Fatalf("get identity %s: HTTP %d", id, status)
	}
	var sessions []struct {
		ID     string `json:"id"`
		Active bool   `json:"active"`
	}
	if status := call(t, "GET", env.kratosAdmin+"/admin/identities/"+id+"/sessions", nil, nil, &sessions); status != http.StatusOK && status != http.StatusNotFound {
		t.Fatalf("list sessions of %s: HTTP %d", id, status)
	}
	st := identityState{PasswordConfig: ident.Credentials["password"].Config, MetadataPublic: ident.MetadataPublic, MetadataAdmin: ident.MetadataAdmin}
	for _, s := range sessions {
		if s.Active {
			st.Sessions = append(st.Sessions, s.ID)
		}
	}
	return st
}

func assertUnchanged(t *testing.T, before identityState, id string) {
	t.Helper()
	if diff := cmp.Diff(before, stateOf(t, id)); diff != "" {
		t.Errorf("the identity changed (-before +after):\n%s", diff)
	}
}

// recoverWithKratosCode runs Kratos's own API recovery flow with the code
// method to its end and returns the session token Kratos issues (the
// Kratos under test runs with continue_with transitions, as Kratos's own
// native apps need).
func recoverWithKratosCode(t *testing.T, email string, mailsBefore int) string {
	t.Helper()
	flowID := submitRecovery(t, email, "code")
	m := waitMails(t, email, mailsBefore+1)[0]
	code := regexp.MustCompile(`\b(\d{6})\b`).FindStringSubmatch(m.Text)
	if code == nil || tempPasswordRe.MatchString(m.Text) {
		t.Fatalf("the mail is not Kratos's code mail:\n%s", m.Text)
	}
	var done struct {
		ContinueWith []struct {
			Action string `json:"action"`
			Token  string `json:"ory_session_token"`
		} `json:"continue_with"`
	}
	if status := call(t, "POST", env.kratosPublic+"/self-service/recovery?flow="+flowID, nil,
		map[string]any{"method": "code", "code": code[1]}, &done); status != http.StatusOK {
		t.Fatalf("submit Kratos's recovery code: HTTP %d", status)
	}
	for _, c := range done.ContinueWith {
		if c.Action == "set_ory_session_token" && c.Token != "" {
			return c.Token
		}
	}
	t.Fatalf("Kratos's recovery gave no session token: %+v", done)
	return ""
}

// assertOnlyChangedLogsIn is the end of every "changed while pending"
// journey: after a new recovery, the password from before the change is
// refused, and the changed one works.
func assertOnlyChangedLogsIn(t *testing.T, email string, refused ...string) {
	t.Helper()
	for _, pw := range refused {
		if status, _ := login(t, email, pw); status != http.StatusBadRequest {
			t.Errorf("login with a password from before the change: HTTP %d, want 400", status)
		}
	}
	if status, _ := login(t, email, changedPassword); status != http.StatusOK {
		t.Errorf("login with the password set while the reset was pending: HTTP %d, want 200", status)
	}
}

// A password changed through the settings flow while a reset is pending
// is the current one: the next recovery does not bring the old one back.
func TestPasswordChangedInSettingsWhilePending(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	_, s := login(t, email, oldPassword) // a session from before the recovery

	startRecovery(t, email)
	first := temporaryPassword(t, waitMails(t, email, 1)[0])
	if status, body := changePassword(t, s.Token, changedPassword); status != http.StatusOK {
		t.Fatalf("settings flow while the reset is pending: HTTP %d %s", status, body)
	}
	if gw, _ := getIdentity(t, id.ID).MetadataAdmin["email_gateway"].(map[string]any); gw["pending"] != nil || gw["settled"] != "changed" {
		t.Errorf("the settings hook left metadata_admin.email_gateway = %v, want no pending reset and settled=changed", gw)
	}
	// Inside password.cooldown: the first mail no longer logs in, so a new
	// one is due.
	startRecovery(t, email)
	second := temporaryPassword(t, waitPasswordMails(t, email, 2)[0])
	assertOnlyChangedLogsIn(t, email, oldPassword, first)
	if status, _ := login(t, email, second); status != http.StatusBadRequest {
		t.Errorf("the second temporary password still logs in after the user's own password voided it: HTTP %d", status)
	}
	if !strings.Contains(h.String(), `"last_reset":"changed"`) {
		t.Errorf("the host did not log why the cooldown did not hold")
	}
}

// The same with an admin PUT that sets a password and keeps metadata_admin
// as it was (the pending reset is stale, not cleared).
func TestPasswordSetByAdminPutWhilePending(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	first := temporaryPassword(t, waitMails(t, email, 1)[0])
	// The gateway marks the reset mailed after it answered Kratos: an admin
	// who read metadata_admin before that would write back a reset that was
	// never mailed, and the next recovery would see no cooldown at all.
	var current identity
	waitFor(t, func() bool {
		current = getIdentity(t, id.ID)
		gw, _ := current.MetadataAdmin["email_gateway"].(map[string]any)
		return gw["mailed_at"] != nil
	}, "the first reset marked mailed")
	if current.MetadataAdmin["email_gateway"].(map[string]any)["pending"] == nil {
		t.Fatal("no pending reset to go stale")
	}
	if status := call(t, "PUT", env.kratosAdmin+"/admin/identities/"+id.ID, nil, map[string]any{
		"schema_id": "default", "state": "active", "traits": current.Traits,
		"metadata_public": current.MetadataPublic, "metadata_admin": current.MetadataAdmin,
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"password": changedPassword}}},
	}, nil); status != http.StatusOK {
		t.Fatalf("admin PUT with a password: HTTP %d", status)
	}
	startRecovery(t, email)
	waitPasswordMails(t, email, 2)
	assertOnlyChangedLogsIn(t, email, oldPassword, first)
	if !strings.Contains(h.String(), `"last_reset":"superseded"`) {
		t.Errorf("the host did not log that the pending reset was superseded")
	}
}

// The same with Kratos's own recovery, while the gateway is switched off.
func TestPasswordChangedThroughKratosRecoveryWhileDisabled(t *testing.T) {
	k := ownKratos(t, "kratos-continue-with", nil, "FEATURE_FLAGS_USE_CONTINUE_WITH_TRANSITIONS=true")
	h := startHost(t, hostOptions{enabled: true, kratos: &k})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	first := temporaryPassword(t, waitMails(t, email, 1)[0])
	edit(t, h, "enabled: true", "enabled: false", "applied")
	token := recoverWithKratosCode(t, email, 1)
	if status, body := changePassword(t, token, changedPassword); status != http.StatusOK {
		t.Fatalf("settings flow after Kratos's recovery: HTTP %d %s", status, body)
	}
	edit(t, h, "enabled: false", "enabled: true", "applied")
	startRecovery(t, email)
	waitPasswordMails(t, email, 2)
	assertOnlyChangedLogsIn(t, email, oldPassword, first)
}

// waitPasswordMails waits for n temporary password mails to addr (Kratos
// also mails verification codes after some flows) and returns them,
// newest first.
func waitPasswordMails(t *testing.T, addr string, n int) []mail {
	t.Helper()
	var got []mail
	waitFor(t, func() bool {
		got = got[:0]
		for _, m := range mailsTo(t, addr) {
			if tempPasswordRe.MatchString(m.Text) {
				got = append(got, m)
			}
		}
		return len(got) >= n
	}, fmt.Sprintf("%d temporary password mail(s) to %s", n, addr))
	for _, m := range got {
		temporaryPassword(t, m) // registers the password for the secret scan
	}
	return got
}

// pbkdf2Hash is a password hash as Kratos imports it ($pbkdf2-sha256$...).
func pbkdf2Hash(t *testing.T, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, password, salt, 10000, 32)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("$pbkdf2-sha256$i=10000,l=32$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func md5Base64(password string) string {
	sum := md5.Sum([]byte(password))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// withImportedHash logs in once (Kratos re-hashes an imported hash with its
// own hasher at the first login), then puts the imported hash back with an
// admin PUT, which ends no session: the user has a live session and the
// imported hash, as after an import of users who were logged in elsewhere.
func withImportedHash(t *testing.T, email string, id identity, hash string) session {
	t.Helper()
	status, s := login(t, email, oldPassword)
	if status != http.StatusOK {
		t.Fatalf("login with the imported password: HTTP %d", status)
	}
	current := getIdentity(t, id.ID)
	if status := call(t, "PUT", env.kratosAdmin+"/admin/identities/"+id.ID, nil, map[string]any{
		"schema_id": "default", "state": "active", "traits": current.Traits,
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": hash}}},
	}, nil); status != http.StatusOK {
		t.Fatalf("admin PUT of the imported hash: HTTP %d", status)
	}
	if got := stateOf(t, id.ID).PasswordConfig["hashed_password"]; got != hash {
		t.Fatalf("Kratos holds %v, want the imported hash", got)
	}
	return s
}

func importIdentity(t *testing.T, email string, credentials map[string]any) identity {
	t.Helper()
	body := map[string]any{"schema_id": "default", "traits": map[string]any{"email": email}}
	if credentials != nil {
		body["credentials"] = credentials
	}
	var id identity
	if status := call(t, "POST", env.kratosAdmin+"/admin/identities", nil, body, &id); status != http.StatusCreated {
		t.Fatalf("import identity %s: HTTP %d", email, status)
	}
	return id
}

// A stranger's recovery of a user with an imported hash the gateway can
// verify (pbkdf2) changes nothing the user has: the password keeps logging
// in, the sessions survive, and the temporary password works too.
func TestImportedPbkdf2PasswordSurvivesAStrangersRecovery(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	hash := pbkdf2Hash(t, oldPassword)
	id := importIdentity(t, email, map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": hash}}})
	s := withImportedHash(t, email, id, hash)

	startRecovery(t, email) // the stranger
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	if whoami(t, s.Token) != http.StatusOK {
		t.Errorf("a stranger's recovery ended the user's session")
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Errorf("login with the imported password after a stranger's recovery: HTTP %d, want 200", status)
	}
	if whoami(t, s.Token) != http.StatusOK {
		t.Errorf("the user's session ended")
	}
	if status, _ := login(t, email, temp); status != http.StatusBadRequest {
		t.Errorf("the temporary password still logs in after the user's own password voided it: HTTP %d", status)
	}
	if meta := getIdentity(t, id.ID).MetadataPublic; meta["password_change_required"] != nil {
		t.Errorf("metadata_public = %v, want no forced change", meta)
	}
}

// A hash the gateway cannot verify (md5): Kratos's own recovery mail goes
// out, exactly as Kratos rendered it, and nothing of the identity changes.
func TestUnverifiableHashGetsKratosOwnRecovery(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	// Kratos's md5 import format: $md5$ + base64(md5(password)).
	hash := "$md5$" + md5Base64(oldPassword)
	id := importIdentity(t, email, map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": hash}}})
	s := withImportedHash(t, email, id, hash)
	before := stateOf(t, id.ID)

	startRecovery(t, email)
	m := waitMails(t, email, 1)[0]
	if !isKratosRecoverySubject(m.Subject) || tempPasswordRe.MatchString(m.Text) || !regexp.MustCompile(`\b\d{6}\b`).MatchString(m.Text) {
		t.Errorf("mail %q is not Kratos's own code mail:\n%s", m.Subject, m.Text)
	}
	assertUnchanged(t, before, id.ID)
	if whoami(t, s.Token) != http.StatusOK {
		t.Errorf("the user's session ended")
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Errorf("login with the unchanged password: HTTP %d, want 200", status)
	}
	for _, want := range []string{`"reason":"unverifiable_hash"`, `"delivery":"kratos_message"`, `"password_hash_format":"other"`} {
		if !strings.Contains(h.String(), want) {
			t.Errorf("the host log does not say %s", want)
		}
	}
	var metrics []byte
	call(t, "GET", "http://"+env.hostAddr+"/metrics", nil, nil, &metrics)
	if !strings.Contains(string(metrics), `kratos_email_gateway_kratos_message_total{reason="unverifiable_hash"} 1`) {
		t.Errorf("no metric counts the recovery left to Kratos")
	}
}

// An identity without a password (code, OIDC or passkey sign-in): the
// temporary password logs in through the migration hook; nothing else of
// the identity changes before it is used.
func TestRecoveryOfAnIdentityWithoutPassword(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := importIdentity(t, email, nil)
	before := stateOf(t, id.ID)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	after := stateOf(t, id.ID)
	if after.PasswordConfig["use_password_migration_hook"] != true || after.PasswordConfig["hashed_password"] != "" {
		t.Errorf("password credential = %v, want the migration hook and no hash", after.PasswordConfig)
	}
	if diff := cmp.Diff(before.MetadataPublic, after.MetadataPublic); diff != "" {
		t.Errorf("metadata_public changed before the temporary password was used:\n%s", diff)
	}
	if status, _ := login(t, email, "Some-Guess-123456"); status != http.StatusBadRequest {
		t.Errorf("a guessed password logs in: HTTP %d", status)
	}
	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d, want 200", status)
	}
	if meta := sessionIdentity(t, s.Token).MetadataPublic; meta["password_change_required"] != true {
		t.Errorf("metadata_public = %v, want the change required", meta)
	}
}

// A subject template that renders a trait holding a line break cannot be
// built: the answer names the template key and holds no rendered value,
// and the identity is exactly as it was.
func TestUnbuildableMailChangesNothingAndLeaksNothing(t *testing.T) {
	cfg := gatewayConfig(hostOptions{enabled: true}) + "template:\n  subject: \"Your new password is {{.Password}} for {{.Identity.Traits.name}}\"\n"
	h, stop := runHostWith(t, writeConfig(t, cfg))
	t.Cleanup(stop)
	email := uniqueEmail(t)
	var id identity
	if status := call(t, "POST", env.kratosAdmin+"/admin/identities", nil, map[string]any{
		"schema_id": "default",
		"traits":    map[string]any{"email": email, "name": "Eve\r\nBcc: eve@example.net"},
		"credentials": map[string]any{"password": map[string]any{
			"config": map[string]any{"password": oldPassword},
		}},
	}, &id); status != http.StatusCreated {
		t.Fatalf("create identity: HTTP %d", status)
	}
	before := stateOf(t, id.ID)

	status, answer := courierOutcome(t, h, "Bearer "+env.apiKey, courierBody(t, id.ID, email))
	if status != http.StatusUnprocessableEntity || !strings.Contains(answer, "template.subject") {
		t.Fatalf("HTTP %d %q, want 422 naming template.subject", status, answer)
	}
	for name, text := range map[string]string{"the answer": answer, "the host log": h.String()} {
		if strings.Contains(text, "Your new password is") || strings.Contains(text, "Bcc: eve") {
			t.Errorf("%s holds the rendered subject: %s", name, text)
		}
	}
	assertUnchanged(t, before, id.ID)
	if got := mailsTo(t, email); len(got) != 0 {
		t.Errorf("%d mail(s) went out", len(got))
	}
}

// A recipient that equals a stored address only under Unicode case folding
// (the Kelvin sign K for k) is not that address: refused, nothing changes.
func TestKelvinSignRecipientRefused(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	email := "kelvin-" + randomHex(4) + "@example.com"
	id := createIdentity(t, email, oldPassword)
	before := stateOf(t, id.ID)
	lookAlike := "\u212A" + strings.TrimPrefix(email, "k")

	status, msg := courierOutcome(t, h, "Bearer "+env.apiKey, courierBody(t, id.ID, lookAlike))
	if status != http.StatusUnprocessableEntity || !strings.Contains(msg, "not a recovery address") {
		t.Fatalf("HTTP %d %q, want 422: not a recovery address", status, msg)
	}
	assertUnchanged(t, before, id.ID)
	for _, addr := range []string{email, lookAlike} {
		if got := mailsTo(t, addr); len(got) != 0 {
			t.Errorf("%d mail(s) went to %q", len(got), addr)
		}
	}
	// The stored address in another case is the same address, and the mail
	// goes to it as Kratos stores it.
	if status, msg := courierOutcome(t, h, "Bearer "+env.apiKey, courierBody(t, id.ID, strings.ToUpper(email))); status != http.StatusOK {
		t.Fatalf("upper-case recipient: HTTP %d %s", status, msg)
	}
	if m := waitMails(t, email, 1)[0]; len(m.To) != 1 || m.To[0].Address != email {
		t.Errorf("mailed to %+v, want the stored %s", m.To, email)
	}
}
