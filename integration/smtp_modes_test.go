package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mailpitServer starts a Mailpit of the test's own with the given SMTP flags.
func mailpitServer(t *testing.T, name string, flags ...string) (smtpPort int, api string) {
	t.Helper()
	smtpPort, httpPort := freePort(), freePort()
	args := append([]string{
		"--smtp", fmt.Sprintf("127.0.0.1:%d", smtpPort),
		"--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--database", filepath.Join(t.TempDir(), "mailpit.db"),
	}, flags...)
	stop, err := env.start(name, filepath.Join(env.root, ".cache", "mailpit-"+mailpitVersion, "mailpit"), t.TempDir(), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	api = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if err := waitHTTP(api+"/api/v1/info", 30*time.Second); err != nil {
		t.Fatalf("%s not ready: %v", name, err)
	}
	return smtpPort, api
}

// smtpTest runs `gateway smtp test` with the stack's config aimed at a port
// and security mode, and returns its exit code and output.
func smtpTest(t *testing.T, port int, security string) (int, string) {
	t.Helper()
	cfg := gatewayConfig(hostOptions{enabled: true, smtpPort: port})
	cfg = strings.Replace(cfg, "security: tls", "security: "+security, 1)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(env.gatewayBin, "smtp", "test", "--config", path, "--to", "probe@example.com")
	cmd.Env = append(os.Environ(), "GATEWAY_SMTP__AUTHORIZATION_CODE="+env.smtpPass, "GATEWAY_SECRETS__CIPHER="+env.cipher)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), env.smtpPass) {
		t.Errorf("smtp test printed the authorization code")
	}
	return code, string(out)
}

// Each security type against a Mailpit started with the matching flags, and
// the hint when the type does not fit the server.
func TestSecurityTypesAgainstMailpit(t *testing.T) {
	auth := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(auth, []byte(env.smtpUser+":"+env.smtpPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(env.dir, "smtp.crt"), filepath.Join(env.dir, "smtp.key")
	implicitPort, _ := mailpitServer(t, "mailpit-implicit", "--smtp-tls-cert", cert, "--smtp-tls-key", key, "--smtp-require-tls", "--smtp-auth-file", auth)
	starttlsPort, _ := mailpitServer(t, "mailpit-starttls", "--smtp-tls-cert", cert, "--smtp-tls-key", key, "--smtp-require-starttls", "--smtp-auth-file", auth)
	plainPort, _ := mailpitServer(t, "mailpit-plain", "--smtp-auth-file", auth, "--smtp-auth-allow-insecure")

	tests := []struct {
		name     string
		port     int
		security string
		wantCode int
		want     []string
	}{
		{"tls", implicitPort, "tls", 0, []string{"connect", "tls", "TLS 1.3", "auth", "accepted"}},
		{"ssl", implicitPort, "ssl", 0, []string{"tls", "TLS 1.", "accepted"}},
		{"starttls", starttlsPort, "starttls", 0, []string{"tls", "STARTTLS", "auth", "accepted"}},
		{"none", plainPort, "none", 0, []string{"connect", "auth", "accepted", "warning: smtp.security is none"}},
		{"starttls against implicit TLS", implicitPort, "starttls", 1, []string{"not delivered", "tls"}},
		{"tls against a plaintext server", plainPort, "tls", 1, []string{"not delivered", "starttls"}},
		{"starttls against a server without STARTTLS", plainPort, "starttls", 1, []string{"not delivered", "STARTTLS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := smtpTest(t, tt.port, tt.security)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// A certificate that does not verify is a fault of the SMTP side like a 5xx
// reply: Kratos gets 502 naming it (and retries, as after any non-2xx), not
// the 422 that reads as "your message was bad".
func TestUnverifiedCertificateAnswers502(t *testing.T) {
	_, _, otherCA, err := writeTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := startHost(t, hostOptions{enabled: true, caFile: otherCA})
	body, err := json.Marshal(map[string]any{
		"recipient": uniqueEmail(t), "template_type": "verification_code_valid", "message_type": "email",
		"subject": "Please verify your email address", "body": "Hi, please verify your account with the code 123456\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	status, msg := courierOutcome(t, logs, "Bearer "+env.apiKey, body)
	if status != http.StatusBadGateway || !strings.Contains(msg, "certificate did not verify") {
		t.Fatalf("HTTP %d %q, want 502 naming the certificate", status, msg)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), `"msg":"delivery failed"`) }, "the failure in the log")
	for _, want := range []string{`"status":502`, "smtp tls", "smtp.ca_file"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the failure log lacks %q:\n%s", want, logs)
		}
	}
}
