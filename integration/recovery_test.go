package integration

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

const oldPassword = "Correct-Horse-Battery-51"

// The heart of the product: a Kratos recovery ends with a temporary password
// in the mailbox that logs in, while the old password stops working.
func TestRecoveryMailsATemporaryPasswordThatLogsIn(t *testing.T) {
	logs := startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)

	status, before := login(t, email, oldPassword)
	if status != http.StatusOK {
		t.Fatalf("login with the initial password: HTTP %d", status)
	}

	startRecovery(t, email)
	mails := waitMails(t, email, 1)
	if len(mails) != 1 {
		t.Fatalf("got %d mails, want exactly 1", len(mails))
	}
	m := mails[0]
	if m.Subject != "Your temporary password" {
		t.Errorf("subject = %q, want the gateway's default", m.Subject)
	}
	if m.From.Name != "Example Accounts" || m.From.Address != "no-reply@example.com" {
		t.Errorf("from = %q <%s>, want Example Accounts <no-reply@example.com>", m.From.Name, m.From.Address)
	}
	if !strings.Contains(m.Text, "http://127.0.0.1:4455/login") || !strings.Contains(m.HTML, "http://127.0.0.1:4455/login") {
		t.Errorf("mail does not link the login UI:\n%s", m.Text)
	}
	if regexp.MustCompile(`\b\d{6}\b`).MatchString(m.Text) {
		t.Errorf("mail carries a Kratos recovery code, want only the temporary password:\n%s", m.Text)
	}
	temp := temporaryPassword(t, m)
	if len(temp) != 16 {
		t.Errorf("temporary password has %d characters, want password.length 16", len(temp))
	}
	if !strings.Contains(m.HTML, htmlEscape(temp)) {
		t.Errorf("HTML part does not carry the same password")
	}

	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d, want 200", status)
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusBadRequest {
		t.Errorf("login with the old password once the temporary one was used: HTTP %d, want 400 (refused)", status)
	}
	meta := sessionIdentity(t, s.Token).MetadataPublic
	if meta["password_change_required"] != true {
		t.Errorf("session metadata_public = %v, want password_change_required: true", meta)
	}
	exp, err := time.Parse(time.RFC3339, asString(meta["temporary_password_expires_at"]))
	if err != nil || time.Until(exp) < 50*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Errorf("temporary_password_expires_at = %v (%v), want about one hour (password.ttl) from now", meta["temporary_password_expires_at"], err)
	}
	if whoami(t, before.Token) != http.StatusUnauthorized {
		t.Errorf("the session from before the reset still works; revoke_sessions is on")
	}
	admin := getIdentity(t, id.ID).MetadataAdmin
	if gw, _ := admin["email_gateway"].(map[string]any); gw["last_reset_at"] == nil {
		t.Errorf("metadata_admin = %v, want email_gateway.last_reset_at", admin)
	}

	for _, secret := range []string{temp, env.apiKey, env.smtpPass} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the gateway log contains a secret (%d characters)", len(secret))
		}
	}
}

// Everything that is not a recovery goes out exactly as Kratos rendered it.
func TestVerificationMailArrivesUnchanged(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	startVerification(t, email)
	m := waitMails(t, email, 1)[0]
	queued := courierMessages(t, email)
	if len(queued) != 1 {
		t.Fatalf("Kratos queued %d messages for %s, want 1", len(queued), email)
	}
	q := queued[0]
	if q.TemplateType != "verification_code_valid" {
		t.Fatalf("template_type = %q, want verification_code_valid", q.TemplateType)
	}
	if m.Subject != q.Subject {
		t.Errorf("subject = %q, Kratos rendered %q", m.Subject, q.Subject)
	}
	if normalize(m.Text) != normalize(q.Body) {
		t.Errorf("body differs from Kratos's rendering:\n got: %q\nwant: %q", m.Text, q.Body)
	}
	if !regexp.MustCompile(`\b\d{6}\b`).MatchString(m.Text) {
		t.Errorf("verification mail carries no code:\n%s", m.Text)
	}
	waitCourierStatus(t, email, "sent")
}

// With enabled: false the gateway only delivers: the recovery mail carries
// Kratos's code and the password does not change.
func TestRecoveryWhileDisabledSendsKratosCode(t *testing.T) {
	startHost(t, hostOptions{enabled: false})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	m := waitMails(t, email, 1)[0]
	if !isKratosRecoverySubject(m.Subject) {
		t.Errorf("subject = %q, want Kratos's recovery subject", m.Subject)
	}
	if !regexp.MustCompile(`\b\d{6}\b`).MatchString(m.Text) {
		t.Errorf("recovery mail carries no Kratos code:\n%s", m.Text)
	}
	if tempPasswordRe.MatchString(m.Text) {
		t.Errorf("recovery mail carries a temporary password while disabled")
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Errorf("login with the unchanged password: HTTP %d, want 200", status)
	}
	if meta := getIdentity(t, id.ID).MetadataPublic; meta["password_change_required"] != nil {
		t.Errorf("metadata_public = %v, want untouched", meta)
	}
}

// waitCourierStatus waits until Kratos recorded the gateway's answer.
func waitCourierStatus(t *testing.T, recipient, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs := courierMessages(t, recipient)
		if len(msgs) > 0 && msgs[0].Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kratos courier messages for %s: %+v, want status %q", recipient, msgs, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func normalize(s string) string { return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n")) }

func asString(v any) string { s, _ := v.(string); return s }

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "+", "&#43;").Replace(s)
}
