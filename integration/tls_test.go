package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// The webhook listener can be private and encrypted: a Kratos that trusts a
// private CA through SSL_CERT_FILE delivers the courier message and calls
// the password migration hook, the login hook and the settings hook over
// HTTPS, and the reverse proxy reaches /gate on gate.listen only.
func TestKratosCallsTheGatewayOverTLS(t *testing.T) {
	certFile, keyFile, caFile, err := writeTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("the test CA does not parse")
	}
	https := &http.Client{
		Timeout:       30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	addr, gateAddr := fmt.Sprintf("127.0.0.1:%d", freePort()), fmt.Sprintf("127.0.0.1:%d", freePort())

	k, stopKratos, err := env.startKratosFor("kratos-tls", "bcrypt", "https://"+addr, "SSL_CERT_FILE="+caFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopKratos)
	useKratos(t, k)
	cfg := gatewayConfig(hostOptions{enabled: true, kratos: &k, listen: addr}) +
		fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\ngate:\n  listen: %s\n", certFile, keyFile, gateAddr)
	logs, stopHost := runHostReady(t, writeConfig(t, cfg), "https://"+addr+"/health/ready", https)
	t.Cleanup(stopHost)

	for _, line := range []string{`"msg":"gateway serving","listen":"` + addr + `","tls":true`, `"msg":"gate serving","key":"gate.listen","listen":"` + gateAddr + `","tls":true`} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("the log lacks %s:\n%s", line, logs)
		}
	}
	if strings.Contains(logs.String(), "security warning") {
		t.Errorf("a security warning for loopback listeners with TLS:\n%s", logs)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	for _, a := range []string{addr, gateAddr} {
		if resp, err := plain.Get("http://" + a + "/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("plain HTTP to %s answered 200, want TLS only", a)
			}
		}
	}

	// Recovery: Kratos's courier → the gateway over TLS → Mailpit.
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	waitCourierStatus(t, email, "sent")

	// The temporary password logs in through the migration hook (Kratos
	// holds no hash of it) and the login hook, both over TLS.
	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d, want 200", status)
	}
	if meta := sessionIdentity(t, s.Token).MetadataPublic; meta["password_change_required"] != true {
		t.Fatalf("session metadata_public = %v, want the flag", meta)
	}

	token := http.Header{"X-Session-Token": {s.Token}}
	get := func(url string, h http.Header) (int, http.Header) {
		t.Helper()
		return tlsCall(t, https, http.MethodGet, url, h)
	}
	if status, _ := get("https://"+gateAddr+"/gate", token); status != http.StatusForbidden {
		t.Errorf("gate.listen /gate while the password must change: HTTP %d, want 403", status)
	}
	if status, _ := get("https://"+gateAddr+"/gate", nil); status != http.StatusUnauthorized {
		t.Errorf("gate.listen /gate without a session: HTTP %d, want 401", status)
	}
	if status, _ := get("https://"+addr+"/gate", token); status != http.StatusNotFound {
		t.Errorf("listen /gate with gate.listen set: HTTP %d, want 404", status)
	}
	for _, path := range []string{"/health/alive", "/health/ready"} {
		if status, _ := get("https://"+gateAddr+path, nil); status != http.StatusOK {
			t.Errorf("gate.listen %s: HTTP %d, want 200", path, status)
		}
	}
	if status, _ := tlsCall(t, https, http.MethodPost, "https://"+gateAddr+"/courier", http.Header{"Authorization": {"Bearer " + env.apiKey}}); status != http.StatusNotFound {
		t.Errorf("gate.listen /courier: HTTP %d, want 404 (Kratos's endpoints stay on listen)", status)
	}

	// The settings hook clears the flag over TLS; the gate lets the session through.
	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow: HTTP %d\n%s", status, body)
	}
	if status, h := get("https://"+gateAddr+"/gate", token); status != http.StatusOK || h.Get("X-Identity-Id") != id.ID {
		t.Errorf("gate.listen /gate after the change: HTTP %d, X-Identity-Id %q; want 200 and %s", status, h.Get("X-Identity-Id"), id.ID)
	}
	assertNoSecrets(t, logs.String(), temp, oldPassword, newPassword)
}

// tlsCall sends a request without a body with client c; the answer joins
// the secret scan like every answer of the gateway.
func tlsCall(t *testing.T, c *http.Client, method, url string, header http.Header) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	observed.output(string(raw))
	return resp.StatusCode, resp.Header
}
