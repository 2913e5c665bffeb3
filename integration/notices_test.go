package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The subjects of the default notices (plugin/mailtmpl/defaults).
const (
	subjectPasswordChanged = "Your password was changed"
	subjectResetVoid       = "Someone asked to recover your account"
)

// noticesTo returns the mails to addr with subject, newest first.
func noticesTo(t *testing.T, addr, subject string) []mail {
	t.Helper()
	var out []mail
	for _, m := range mailsTo(t, addr) {
		if m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

// waitNotice waits for a mail to addr with subject and returns it, after
// checking that it holds none of the secrets and registering it for the
// run-wide secret scan (zz_secrets_test.go), from which notices, unlike
// the password mails, are not exempt.
func waitNotice(t *testing.T, addr, subject string, secrets ...string) mail {
	t.Helper()
	var got []mail
	waitFor(t, func() bool {
		got = noticesTo(t, addr, subject)
		return len(got) > 0
	}, fmt.Sprintf("a %q notice to %s", subject, addr))
	m := got[0]
	assertNoticeHoldsNoSecret(t, m, secrets...)
	return m
}

// assertNoticeHoldsNoSecret checks a notice against the secrets of the
// test and of the stack, and hands it to the run-wide scan.
func assertNoticeHoldsNoSecret(t *testing.T, m mail, secrets ...string) {
	t.Helper()
	whole := m.Subject + "\n" + m.Text + "\n" + m.HTML
	for _, s := range append(secrets, env.apiKey, env.smtpPass, env.cipher, oldPassword, newPassword, changedPassword) {
		if s != "" && containsSecret(whole, s) {
			t.Errorf("the %q notice holds a secret (%d characters, starting %.3q…)", m.Subject, len(s), s)
		}
	}
	// No link that logs in: Kratos's recovery and verification links carry
	// a token or code.
	for _, word := range []string{"token=", "code=", "/self-service/recovery", "/self-service/verification"} {
		if strings.Contains(whole, word) {
			t.Errorf("the %q notice holds %q, a part of a link that logs in", m.Subject, word)
		}
	}
	observed.output(whole)
}

// noticeCount is kratos_email_gateway_notices_total{kind,result} on the
// running host's /metrics.
func noticeCount(t *testing.T, kind, result string) int {
	t.Helper()
	var raw []byte
	if status := call(t, "GET", "http://"+env.hostAddr+"/metrics", nil, nil, &raw); status != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d", status)
	}
	prefix := fmt.Sprintf(`kratos_email_gateway_notices_total{kind="%s",result="%s"} `, kind, result)
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("metric %q: %v", sc.Text(), err)
			}
			return n
		}
	}
	return 0
}

// The forced-change journey through Kratos: after the user chose a new
// password, a "your password was changed" notice reaches the identity's
// recovery address, holding neither the temporary password nor any other
// secret. Using the temporary password voids nothing, so no reset_void
// notice goes out.
func TestNoticeAfterTheForcedChange(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d", status)
	}
	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow: HTTP %d\n%s", status, body)
	}

	m := waitNotice(t, email, subjectPasswordChanged, temp)
	if len(m.To) != 1 || m.To[0].Address != email {
		t.Errorf("the notice went to %+v, want the recovery address %s alone", m.To, email)
	}
	for _, want := range []string{"was changed on", "Forgot password?", "http://127.0.0.1:4455/login"} {
		if !strings.Contains(m.Text, want) || !strings.Contains(m.HTML, want) {
			t.Errorf("the notice's text or HTML lacks %q:\n%s", want, m.Text)
		}
	}
	if n := len(noticesTo(t, email, subjectResetVoid)); n != 0 {
		t.Errorf("%d reset_void notices after the temporary password was used, want none", n)
	}
	if n := noticeCount(t, "password_changed", "sent"); n != 1 {
		t.Errorf("notices_total{password_changed,sent} = %d, want 1", n)
	}
	logs := h.String()
	if !strings.Contains(logs, `"msg":"notice sent","event":"notice","kind":"password_changed","identity_id":"`+id.ID+`"`) {
		t.Errorf("no log line says the notice was sent, naming kind and identity:\n%s", logs)
	}
	assertNoSecrets(t, logs, temp, newPassword)
}

// An ordinary password change in Kratos's settings flow, without any
// recovery, gets the notice too. A call of the settings hook that names
// another address (only a holder of webhook.api_key can make one) mails
// nobody: the gateway reads the addresses from Kratos, and Kratos stored
// no new password.
func TestNoticeAfterAnOrdinaryPasswordChange(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	status, s := login(t, email, oldPassword)
	if status != http.StatusOK {
		t.Fatalf("login: HTTP %d", status)
	}
	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow: HTTP %d\n%s", status, body)
	}
	waitNotice(t, email, subjectPasswordChanged)
	if status, _ := login(t, email, newPassword); status != http.StatusOK {
		t.Errorf("login with the new password: HTTP %d", status)
	}

	victim := uniqueEmail(t)
	forged := "forged-" + uniqueEmail(t)
	vid := createIdentity(t, victim, oldPassword)
	body := map[string]any{"identity": map[string]any{
		"id": vid.ID, "metadata_public": map[string]any{},
		"traits":             map[string]any{"email": forged},
		"recovery_addresses": []any{map[string]any{"value": forged, "via": "email"}},
	}}
	if status := call(t, "POST", "http://"+env.hostAddr+"/hooks/settings", http.Header{"Authorization": {"Bearer " + env.apiKey}}, body, nil); status != http.StatusOK {
		t.Fatalf("settings hook with a forged body: HTTP %d", status)
	}
	// The notice waits a few seconds for Kratos to store a new password,
	// which never comes, and is skipped.
	waitFor(t, func() bool { return noticeCount(t, "password_changed", "skipped") == 1 }, "the forged notice skipped")
	if got := len(mailsTo(t, forged)) + len(mailsTo(t, victim)); got != 0 {
		t.Errorf("%d mails after the forged hook call, want none", got)
	}
}

// A pending reset voided by a login with the current password: the user
// hears that someone asked to recover the account and that nothing
// changed, at the recovery address, without the temporary password.
func TestNoticeWhenAResetIsVoided(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Fatalf("login with the current password: HTTP %d", status)
	}

	m := waitNotice(t, email, subjectResetVoid, temp)
	if len(m.To) != 1 || m.To[0].Address != email {
		t.Errorf("the notice went to %+v, want the recovery address %s alone", m.To, email)
	}
	for _, want := range []string{"current password", "nothing changed", "no longer", "http://127.0.0.1:4455/settings"} {
		if !strings.Contains(m.Text, want) || !strings.Contains(m.HTML, want) {
			t.Errorf("the notice's text or HTML lacks %q:\n%s", want, m.Text)
		}
	}
	// A second login finds no pending reset: no second notice.
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Errorf("second login: HTTP %d", status)
	}
	if status, _ := login(t, email, temp); status != http.StatusBadRequest {
		t.Errorf("login with the voided temporary password: HTTP %d, want 400", status)
	}
	if n := noticeCount(t, "reset_void", "sent"); n != 1 {
		t.Errorf("notices_total{reset_void,sent} = %d, want 1", n)
	}
	if n := len(noticesTo(t, email, subjectResetVoid)); n != 1 {
		t.Errorf("%d reset_void notices, want 1", n)
	}
	if n := len(noticesTo(t, email, subjectPasswordChanged)); n != 0 {
		t.Errorf("%d password_changed notices, want none: the password did not change", n)
	}
	if !strings.Contains(h.String(), `"msg":"notice sent","event":"notice","kind":"reset_void","identity_id":"`+id.ID+`"`) {
		t.Errorf("no log line says the notice was sent:\n%s", h)
	}
	assertNoSecrets(t, h.String(), temp)
}

// Switched off by a live reload, neither notice goes out, each counted as
// skipped, while the journeys work as before; switched on again, they do.
func TestNoticesSwitchedOffByAReload(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	edit(t, h, "smtp:\n", "notices:\n  password_changed:\n    enabled: false\n  reset_void:\n    enabled: false\nsmtp:\n", "applied")

	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	status, s := login(t, email, oldPassword)
	if status != http.StatusOK {
		t.Fatalf("login with the current password: HTTP %d", status)
	}
	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow: HTTP %d\n%s", status, body)
	}
	// A switched-off notice is counted when it happens, before the hook
	// answered Kratos: both counts are there now.
	if a, b := noticeCount(t, "reset_void", "skipped"), noticeCount(t, "password_changed", "skipped"); a != 1 || b != 1 {
		t.Errorf("skipped reset_void %d, password_changed %d; want 1 each", a, b)
	}
	// A mail queued after both: once it arrived, a notice sent at the
	// events would have too.
	startRecovery(t, email)
	waitPasswordMails(t, email, 2)
	for _, subject := range []string{subjectResetVoid, subjectPasswordChanged} {
		if n := len(noticesTo(t, email, subject)); n != 0 {
			t.Errorf("%d %q notices while switched off, want none", n, subject)
		}
	}
	if a, b := noticeCount(t, "reset_void", "sent"), noticeCount(t, "password_changed", "sent"); a != 0 || b != 0 {
		t.Errorf("sent reset_void %d, password_changed %d; want none", a, b)
	}
	if n := strings.Count(h.String(), `"msg":"notice switched off; not sent"`); n != 2 {
		t.Errorf("%d lines say a notice was switched off, want 2:\n%s", n, h)
	}

	edit(t, h, "  reset_void:\n    enabled: false\n", "  reset_void:\n    enabled: true\n", "applied")
	if status, _ := login(t, email, newPassword); status != http.StatusOK {
		t.Fatalf("login with the changed password voids the second reset: HTTP %d", status)
	}
	waitNotice(t, email, subjectResetVoid, temp)
	if n := len(noticesTo(t, email, subjectPasswordChanged)); n != 0 {
		t.Errorf("%d password_changed notices, want none: it is still off", n)
	}
}

// gateway template preview shows each notice with sample data, from the
// defaults or from the operator's template.dir with its locale folders; a
// notice has no --method.
func TestNoticeTemplatePreview(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "de"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"de/reset_void.subject.txt": "Jemand wollte Ihr Konto wiederherstellen\n",
		"de/reset_void.body.txt":    "Am {{formatTime .At}} haben Sie sich mit Ihrem Passwort angemeldet: {{.SettingsURL}}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writeConfig(t, gatewayConfig(hostOptions{enabled: true})+"template:\n  dir: "+dir+"\n")
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--notice", "password_changed"}, []string{"Subject: " + subjectPasswordChanged, "alice@example.com was changed on", "http://127.0.0.1:4455/login"}},
		{[]string{"--notice", "reset_void", "--part", "all"}, []string{"Subject: " + subjectResetVoid, "Locale: default", "--- html ---", "http://127.0.0.1:4455/settings"}},
		{[]string{"--notice", "reset_void", "--locale", "de", "--part", "all"}, []string{"Subject: Jemand wollte Ihr Konto wiederherstellen", "Locale: de", "haben Sie sich mit Ihrem Passwort angemeldet: http://127.0.0.1:4455/settings"}},
		{[]string{"--notice", "password_changed", "--locale", "de"}, []string{"Subject: " + subjectPasswordChanged}},
	}
	for _, tt := range tests {
		code, out := runGateway(t, append([]string{"template", "preview", "--config", cfg}, tt.args...)...)
		if code != 0 {
			t.Errorf("preview %q: exit %d\n%s", tt.args, code, out)
			continue
		}
		for _, want := range tt.want {
			if !strings.Contains(out, want) {
				t.Errorf("preview %q lacks %q:\n%s", tt.args, want, out)
			}
		}
		if strings.Contains(out, "Sample-Pass-4711") || strings.Contains(out, "482913") {
			t.Errorf("preview %q shows the password mail's sample secrets:\n%s", tt.args, out)
		}
	}
	for _, args := range [][]string{{"--notice", "password_expired"}, {"--notice", "reset_void", "--method", "link"}} {
		if code, out := runGateway(t, append([]string{"template", "preview", "--config", cfg}, args...)...); code != 2 || !strings.Contains(out, "--notice is password_changed or reset_void") {
			t.Errorf("preview %q: exit %d, %q; want a usage error", args, code, out)
		}
	}
}
