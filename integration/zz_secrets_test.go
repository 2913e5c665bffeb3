package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// No secret leaves the gateway: after every other test of the run (this
// file sorts last) and a journey of its own — recovery, login with the
// temporary password, a new password, an admin reset, an SMTP outage — no
// password, authorization code, cipher key or API key appears in any log
// line the gateway and its plugin wrote, any HTTP answer a test received
// (the gateway's and Kratos's; only the mailbox is exempt), the gateway's
// metrics, or the output of its commands.
func TestZZNoSecretLeaks(t *testing.T) {
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort())
	adminKey := "it-admin-key-" + randomHex(8)
	observed.secret(adminKey)
	cfg := writeConfig(t, gatewayConfig(hostOptions{enabled: true, cooldown: "0s"})+fmt.Sprintf("admin:\n  listen: %s\n  api_key: %s\n", adminAddr, adminKey))
	h, stop := runHostWith(t, cfg)
	defer stop()

	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d", status)
	}
	if status, _ := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow: HTTP %d", status)
	}
	if status := call(t, "POST", "http://"+adminAddr+"/admin/identities/"+id.ID+"/reset", http.Header{"Authorization": {"Bearer " + adminKey}}, nil, nil); status != http.StatusOK {
		t.Fatalf("admin reset: HTTP %d", status)
	}
	// Kratos also mails a verification code after the settings flow, so
	// wait for the second password mail, not the second mail.
	waitFor(t, func() bool {
		n := 0
		for _, m := range mailsTo(t, email) {
			if tempPasswordRe.MatchString(m.Text) {
				n++
				observed.secret(tempPasswordRe.FindStringSubmatch(m.Text)[1])
			}
		}
		return n >= 2
	}, "the admin reset's mail")
	runGateway(t, "smtp", "test", "--config", writeConfig(t, gatewayConfig(hostOptions{enabled: true, smtpPort: closedPort(t)})), "--to", email)
	var metrics []byte
	call(t, "GET", "http://"+env.hostAddr+"/metrics", nil, nil, &metrics)
	stop()

	secrets, outputs := observed.snapshot()
	secrets = append(secrets, env.apiKey, env.smtpPass, env.cipher, oldPassword, newPassword)
	logs, err := filepath.Glob(filepath.Join(env.logDir, "gateway-*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no gateway logs to scan in %s: %v", env.logDir, err)
	}
	sources := map[string]string{"this test's host log": h.String()}
	for _, path := range logs {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sources[filepath.Base(path)] = string(raw)
	}
	for i, o := range outputs {
		sources[fmt.Sprintf("HTTP answer or command output #%d", i)] = o
	}
	scanned := 0
	for name, text := range sources {
		scanned += len(text)
		for _, secret := range secrets {
			if secret != "" && containsSecret(text, secret) {
				t.Errorf("%s contains a secret (%d characters, starting %.3q…)", name, len(secret), secret)
			}
		}
	}
	t.Logf("scanned %d sources (%d KiB) for %d secrets", len(sources), scanned>>10, len(secrets))
	if len(secrets) < 8 || scanned < 10<<10 {
		t.Fatalf("the scan saw too little to mean anything: %d secrets, %d bytes", len(secrets), scanned)
	}
}

// containsSecret reports whether text holds secret. A secret of digits
// only (Kratos's 6-digit recovery code) counts only as a number of its own:
// inside a longer run of digits (a nanosecond timestamp, a duration) it is
// a coincidence, not a leak.
func containsSecret(text, secret string) bool {
	if strings.Trim(secret, "0123456789") != "" {
		return strings.Contains(text, secret)
	}
	for i := 0; ; {
		j := strings.Index(text[i:], secret)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(secret)
		if (start == 0 || !isDigit(text[start-1])) && (end == len(text) || !isDigit(text[end])) {
			return true
		}
		i = start + 1
	}
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }
