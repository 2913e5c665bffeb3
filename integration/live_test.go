package integration

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// edit rewrites the host's config file and waits until the host logged the
// reload's result.
func edit(t *testing.T, h *hostProc, from, to, result string) {
	t.Helper()
	raw, err := os.ReadFile(h.configPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), from) {
		t.Fatalf("config has no %q", from)
	}
	before := strings.Count(h.String(), `"event":"config_reload"`)
	if err := os.WriteFile(h.configPath, []byte(strings.Replace(string(raw), from, to, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(h.String(), `"event":"config_reload"`) == before {
		if time.Now().After(deadline) {
			t.Fatalf("the host did not reload after the edit:\n%s", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(h.String(), `"result":"`+result+`"`) {
		t.Fatalf("reload result is not %s:\n%s", result, h)
	}
}

// The SMTP settings, the templates and the toggle change with the file, for
// the next message, without a restart; a bad edit is refused while mail
// keeps flowing.
func TestLiveConfigReload(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})

	edit(t, h, "sender_name: Example Accounts", "sender_name: Reloaded Accounts\n  # edited by the test", "applied")
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	if m := waitMails(t, email, 1)[0]; m.From.Name != "Reloaded Accounts" {
		t.Errorf("sender name after the reload = %q, want Reloaded Accounts", m.From.Name)
	}

	edit(t, h, "smtp:\n", "template:\n  subject: \"Reloaded: your temporary password\"\nsmtp:\n", "applied")
	email = uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	if m := waitMails(t, email, 1)[0]; m.Subject != "Reloaded: your temporary password" {
		t.Errorf("subject after the template reload = %q", m.Subject)
	}

	edit(t, h, "enabled: true", "enabled: false", "applied")
	email = uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	if m := waitMails(t, email, 1)[0]; !isKratosRecoverySubject(m.Subject) {
		t.Errorf("recovery while disabled: subject %q, want Kratos's", m.Subject)
	}

	// A broken edit: refused, reported by readiness, and mail still flows
	// with the last good config.
	edit(t, h, "port: ", "port: 70000\n  # was port: ", "refused")
	var ready map[string]any
	if status := call(t, "GET", "http://"+env.hostAddr+"/health/ready", nil, nil, &ready); status != http.StatusServiceUnavailable ||
		!strings.Contains(asString(ready["errors"].(map[string]any)["config"]), "smtp.port") {
		t.Errorf("readiness after a refused reload: HTTP %d %v, want 503 naming smtp.port", status, ready)
	}
	email = uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	startVerification(t, email)
	if m := waitMails(t, email, 1)[0]; m.From.Name != "Reloaded Accounts" {
		t.Errorf("mail after a refused reload came from %q, want the last good sender", m.From.Name)
	}
	assertNoSecrets(t, h.String())
}
