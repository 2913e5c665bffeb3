package integration

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runGateway runs a gateway command with the stack's secrets in its
// environment and returns its exit code and output.
func runGateway(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(env.gatewayBin, args...)
	cmd.Env = append(os.Environ(), "GATEWAY_SMTP__AUTHORIZATION_CODE="+env.smtpPass, "GATEWAY_SECRETS__CIPHER="+env.cipher)
	out, err := cmd.CombinedOutput()
	observed.output(string(out))
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	return writeConfigTB(t, body)
}

// writeConfigTB is writeConfig for tests and benchmarks.
func writeConfigTB(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// An admin resets several identities after a breach: the password is
// replaced at once, sessions end, every user gets a mail; the run goes on
// past an unknown id, reports it, and a rerun skips what was done.
func TestBulkResetThroughKratos(t *testing.T) {
	startHost(t, hostOptions{enabled: true}) // Kratos's hooks must reach a gateway for the logins below
	config := writeConfig(t, gatewayConfig(hostOptions{enabled: true}))
	var emails, ids []string
	var sessions []session
	for range 3 {
		email := uniqueEmail(t)
		id := createIdentity(t, email, oldPassword)
		_, s := login(t, email, oldPassword)
		emails, ids, sessions = append(emails, email), append(ids, id.ID), append(sessions, s)
	}
	list := filepath.Join(t.TempDir(), "ids.txt")
	content := "# breached accounts\n" + strings.Join(ids, "\n") + "\n0b7a1c9e-5d7f-4a59-9d0e-6c1f0e3a2b11\n"
	if err := os.WriteFile(list, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out := runGateway(t, "reset", "--config", config, "--file", list, "--concurrency", "2")
	if code != 1 || !strings.Contains(out, "summary: 4 identities: 3 reset, 0 skipped, 1 failed") ||
		!strings.Contains(out, "0b7a1c9e-5d7f-4a59-9d0e-6c1f0e3a2b11: identity not found in Kratos") {
		t.Fatalf("exit %d, want 1 with the unknown id in the summary:\n%s", code, out)
	}
	for i, email := range emails {
		temp := temporaryPassword(t, waitMails(t, email, 1)[0])
		if status, _ := login(t, email, oldPassword); status != http.StatusBadRequest {
			t.Errorf("%s: the old password still works after an admin reset", email)
		}
		if whoami(t, sessions[i].Token) != http.StatusUnauthorized {
			t.Errorf("%s: the session from before the admin reset still works", email)
		}
		if status, _ := login(t, email, temp); status != http.StatusOK {
			t.Errorf("%s: the mailed temporary password does not log in", email)
		}
	}
	assertNoSecrets(t, out)

	code, out = runGateway(t, "reset", "--config", config, "--file", list)
	if code != 1 || !strings.Contains(out, "summary: 4 identities: 0 reset, 3 skipped, 1 failed") {
		t.Errorf("rerun: exit %d, want the three done identities skipped:\n%s", code, out)
	}
	for _, email := range emails {
		if got := len(mailsTo(t, email)); got != 1 {
			t.Errorf("%s got %d mails after the rerun, want still 1", email, got)
		}
	}

	code, out = runGateway(t, "reset", "--config", config, "--all", "--dry-run", "--page-size", "2")
	if code != 0 || !strings.Contains(out, "would be reset") || strings.Contains(out, " 0 would be reset") {
		t.Errorf("dry run over all identities: exit %d:\n%s", code, out)
	}
	for _, email := range emails {
		if got := len(mailsTo(t, email)); got != 1 {
			t.Errorf("%s got a mail from a dry run", email)
		}
	}
}

// An admin console resets one user through the admin API on its own
// listener and key.
func TestAdminAPIReset(t *testing.T) {
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	adminKey := "it-admin-key-" + randomHex(8)
	observed.secret(adminKey)
	h, stop := runHostWith(t, writeConfig(t, gatewayConfig(hostOptions{enabled: true})+
		fmt.Sprintf("admin:\n  listen: %s\n  api_key: %s\n", adminAddr, adminKey)))
	defer stop()
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	url := "http://" + adminAddr + "/admin/identities/" + id.ID + "/reset"

	if status := call(t, "POST", url, http.Header{"Authorization": {"Bearer " + env.apiKey}}, nil, nil); status != http.StatusUnauthorized {
		t.Errorf("admin API with Kratos's webhook key: HTTP %d, want 401", status)
	}
	var out map[string]string
	if status := call(t, "POST", url, http.Header{"Authorization": {"Bearer " + adminKey}}, nil, &out); status != http.StatusOK || out["outcome"] != "sent" {
		t.Fatalf("admin reset: HTTP %d %v", status, out)
	}
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	if status, _ := login(t, email, temp); status != http.StatusOK {
		t.Errorf("login with the admin-issued password: HTTP %d", status)
	}
	if status := call(t, "POST", url, http.Header{"Authorization": {"Bearer " + adminKey}}, nil, &out); status != http.StatusConflict || out["outcome"] != "cooldown" {
		t.Errorf("second admin reset inside the cooldown: HTTP %d %v, want 409 cooldown", status, out)
	}
	if !strings.Contains(h.String(), `"trigger":"admin-api"`) {
		t.Errorf("no audit event for the admin reset")
	}
	assertNoSecrets(t, h.String(), temp, adminKey)
}
