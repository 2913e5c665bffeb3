package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type teeWriter struct{ a, b io.Writer }

func (w *teeWriter) Write(p []byte) (int, error) {
	_, _ = w.a.Write(p)
	return w.b.Write(p)
}

// client does not follow redirects (tests look at the 303s themselves),
// and a request that hangs fails its own check, not the whole run.
var client = &http.Client{
	Timeout:       60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// call sends a JSON request and decodes a JSON answer into out (if non-nil).
func call(t *testing.T, method, url string, header http.Header, body, out any) int {
	t.Helper()
	status, _ := callHeaders(t, method, url, header, body, out)
	return status
}

// callHeaders is call that also returns the response headers.
func callHeaders(t *testing.T, method, url string, header http.Header, body, out any) (int, http.Header) {
	t.Helper()
	status, h, err := send(method, url, header, body, out)
	if err != nil {
		t.Fatal(err)
	}
	return status, h
}

// send is call without a test to end: it returns what went wrong, so
// goroutines can use it. A []byte body goes as it is, anything else as
// JSON; an out of *[]byte gets the raw answer. Every answer but the
// mailbox's (mails carry temporary passwords by design) is scanned for
// secrets at the end of the run: the gateway's, and Kratos's, which shows
// the hooks' refusals to users.
func send(method, url string, header http.Header, body, out any) (int, http.Header, error) {
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case []byte:
			rd = bytes.NewReader(b)
		default:
			raw, err := json.Marshal(body)
			if err != nil {
				return 0, nil, err
			}
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	if !strings.HasPrefix(url, env.mailpitAPI) {
		observed.output(string(raw))
	}
	if out != nil && len(raw) > 0 {
		if b, ok := out.(*[]byte); ok {
			*b = raw
		} else if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: HTTP %d, body not JSON: %v\n%s", method, url, resp.StatusCode, err, raw)
		}
	}
	return resp.StatusCode, resp.Header, nil
}

// logLines decodes a host's JSON log lines.
func logLines(log string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(log, "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// uniqueEmail keeps tests apart in Kratos and in Mailpit.
func uniqueEmail(t *testing.T) string {
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	return fmt.Sprintf("%s-%s@example.com", strings.Trim(name, "-"), randomHex(4))
}

// --- Kratos ---

type identity struct {
	ID             string         `json:"id"`
	Traits         map[string]any `json:"traits"`
	MetadataPublic map[string]any `json:"metadata_public"`
	MetadataAdmin  map[string]any `json:"metadata_admin"`
}

func createIdentity(t *testing.T, email, password string) identity {
	t.Helper()
	var id identity
	status := call(t, "POST", env.kratosAdmin+"/admin/identities", nil, map[string]any{
		"schema_id": "default",
		"traits":    map[string]any{"email": email},
		"credentials": map[string]any{"password": map[string]any{
			"config": map[string]any{"password": password},
		}},
	}, &id)
	if status != http.StatusCreated {
		t.Fatalf("create identity %s: HTTP %d", email, status)
	}
	return id
}

func getIdentity(t *testing.T, id string) identity {
	t.Helper()
	var out identity
	if status := call(t, "GET", env.kratosAdmin+"/admin/identities/"+id, nil, nil, &out); status != http.StatusOK {
		t.Fatalf("get identity %s: HTTP %d", id, status)
	}
	return out
}

// startRecovery runs Kratos's API recovery flow with the code method up to
// the point where Kratos queues the mail.
func startRecovery(t *testing.T, email string) {
	t.Helper()
	submitRecovery(t, email, "code")
}

// submitRecovery runs Kratos's API recovery flow with method (code or link)
// up to the point where Kratos queues the mail, and returns the flow's id
// for a test that goes on with Kratos's own code or link.
func submitRecovery(t *testing.T, email, method string) string {
	t.Helper()
	var flow struct {
		ID string `json:"id"`
	}
	if status := call(t, "GET", env.kratosPublic+"/self-service/recovery/api", nil, nil, &flow); status != http.StatusOK {
		t.Fatalf("create recovery flow: HTTP %d", status)
	}
	var submitted struct {
		State string `json:"state"`
	}
	status := call(t, "POST", env.kratosPublic+"/self-service/recovery?flow="+flow.ID, nil,
		map[string]any{"method": method, "email": email}, &submitted)
	if status != http.StatusOK || submitted.State != "sent_email" {
		t.Fatalf("submit recovery flow (%s) for %s: HTTP %d, state %q", method, email, status, submitted.State)
	}
	return flow.ID
}

// startVerification asks Kratos to send a verification code to email.
func startVerification(t *testing.T, email string) {
	t.Helper()
	var flow struct {
		ID string `json:"id"`
	}
	if status := call(t, "GET", env.kratosPublic+"/self-service/verification/api", nil, nil, &flow); status != http.StatusOK {
		t.Fatalf("create verification flow: HTTP %d", status)
	}
	var submitted struct {
		State string `json:"state"`
	}
	status := call(t, "POST", env.kratosPublic+"/self-service/verification?flow="+flow.ID, nil,
		map[string]any{"method": "code", "email": email}, &submitted)
	if status != http.StatusOK || submitted.State != "sent_email" {
		t.Fatalf("submit verification flow for %s: HTTP %d, state %q", email, status, submitted.State)
	}
}

type session struct {
	Token   string `json:"session_token"`
	Session struct {
		Identity identity `json:"identity"`
	} `json:"session"`
}

// login runs Kratos's API login flow with a password and returns the HTTP
// status of the submission (200 logged in, 400 refused).
func login(t *testing.T, identifier, password string) (int, session) {
	t.Helper()
	var flow struct {
		ID string `json:"id"`
	}
	if status := call(t, "GET", env.kratosPublic+"/self-service/login/api", nil, nil, &flow); status != http.StatusOK {
		t.Fatalf("create login flow: HTTP %d", status)
	}
	var s session
	status := call(t, "POST", env.kratosPublic+"/self-service/login?flow="+flow.ID, nil,
		map[string]any{"method": "password", "identifier": identifier, "password": password}, &s)
	return status, s
}

// loginRaw is login returning Kratos's raw answer, to read its messages.
func loginRaw(t *testing.T, identifier, password string) (int, string) {
	t.Helper()
	var flow struct {
		ID string `json:"id"`
	}
	if status := call(t, "GET", env.kratosPublic+"/self-service/login/api", nil, nil, &flow); status != http.StatusOK {
		t.Fatalf("create login flow: HTTP %d", status)
	}
	var raw []byte
	status := call(t, "POST", env.kratosPublic+"/self-service/login?flow="+flow.ID, nil,
		map[string]any{"method": "password", "identifier": identifier, "password": password}, &raw)
	return status, string(raw)
}

// changePassword runs Kratos's API settings flow with a session token.
func changePassword(t *testing.T, token, password string) (int, string) {
	t.Helper()
	h := http.Header{"X-Session-Token": {token}}
	var flow struct {
		ID string `json:"id"`
	}
	if status := call(t, "GET", env.kratosPublic+"/self-service/settings/api", h, nil, &flow); status != http.StatusOK {
		t.Fatalf("create settings flow: HTTP %d", status)
	}
	var raw []byte
	status := call(t, "POST", env.kratosPublic+"/self-service/settings?flow="+flow.ID, h,
		map[string]any{"method": "password", "password": password}, &raw)
	return status, string(raw)
}

// gate asks the gateway's forward-auth endpoint about a request.
func gate(t *testing.T, header http.Header) (int, http.Header) {
	t.Helper()
	return callHeaders(t, "GET", "http://"+env.hostAddr+"/gate", header, nil, nil)
}

// sessionIdentity reads the session's identity afresh through whoami (a
// login answer carries the identity as it was before the login's hooks).
func sessionIdentity(t *testing.T, token string) identity {
	t.Helper()
	var s struct {
		Identity identity `json:"identity"`
	}
	if status := call(t, "GET", env.kratosPublic+"/sessions/whoami", http.Header{"X-Session-Token": {token}}, nil, &s); status != http.StatusOK {
		t.Fatalf("whoami: HTTP %d", status)
	}
	return s.Identity
}

// useKratos points the helpers at another Kratos for the rest of the test.
func useKratos(t *testing.T, k kratosServer) {
	t.Helper()
	public, admin := env.kratosPublic, env.kratosAdmin
	env.kratosPublic, env.kratosAdmin = k.public, k.admin
	t.Cleanup(func() { env.kratosPublic, env.kratosAdmin = public, admin })
}

// whoami returns the HTTP status of Kratos's session check for a token.
func whoami(t *testing.T, token string) int {
	t.Helper()
	return call(t, "GET", env.kratosPublic+"/sessions/whoami", http.Header{"X-Session-Token": {token}}, nil, nil)
}

type courierMessage struct {
	Status       string `json:"status"`
	Subject      string `json:"subject"`
	Body         string `json:"body"`
	TemplateType string `json:"template_type"`
	SendCount    int    `json:"send_count"`
}

// courierMessages lists what Kratos queued for a recipient.
func courierMessages(t *testing.T, recipient string) []courierMessage {
	t.Helper()
	var out []courierMessage
	if status := call(t, "GET", env.kratosAdmin+"/admin/courier/messages?recipient="+url.QueryEscape(recipient), nil, nil, &out); status != http.StatusOK {
		t.Fatalf("list courier messages: HTTP %d", status)
	}
	return out
}

// --- Mailpit ---

type mail struct {
	ID   string `json:"ID"`
	From struct {
		Name    string `json:"Name"`
		Address string `json:"Address"`
	} `json:"From"`
	To []struct {
		Address string `json:"Address"`
	} `json:"To"`
	Subject string `json:"Subject"`
	Text    string `json:"Text"`
	HTML    string `json:"HTML"`
}

// mailsTo returns every mail Mailpit holds for an address, newest first.
func mailsTo(t *testing.T, addr string) []mail {
	t.Helper()
	var res struct {
		Messages []mail `json:"messages"`
	}
	q := url.QueryEscape(fmt.Sprintf("to:%q", addr))
	if status := call(t, "GET", env.mailpitAPI+"/api/v1/search?query="+q, nil, nil, &res); status != http.StatusOK {
		t.Fatalf("search Mailpit: HTTP %d", status)
	}
	out := make([]mail, 0, len(res.Messages))
	for _, m := range res.Messages {
		var full mail
		if status := call(t, "GET", env.mailpitAPI+"/api/v1/message/"+m.ID, nil, nil, &full); status != http.StatusOK {
			t.Fatalf("read Mailpit message %s: HTTP %d", m.ID, status)
		}
		out = append(out, full)
	}
	return out
}

// waitMails polls Mailpit until n mails reached addr, for as long as
// Kratos's courier plausibly needs to dispatch them.
func waitMails(t *testing.T, addr string, n int) []mail {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		got := mailsTo(t, addr)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited for %d mail(s) to %s, got %d; Kratos courier queue: %+v", n, addr, len(got), courierMessages(t, addr))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var tempPasswordRe = regexp.MustCompile(`temporary password for it:\s+(\S+)`)

// temporaryPassword reads the password out of the default text template.
func temporaryPassword(t *testing.T, m mail) string {
	t.Helper()
	match := tempPasswordRe.FindStringSubmatch(m.Text)
	if match == nil {
		t.Fatalf("no temporary password in mail %q:\n%s", m.Subject, m.Text)
	}
	observed.secret(match[1])
	return match[1]
}

// observed collects, across the whole run, every secret the tests handled
// and everything the gateway said (HTTP answers, command output), so one
// test can check that no secret ever left the gateway (zz_secrets_test.go).
var observed = &leakWatch{}

type leakWatch struct {
	mu      sync.Mutex
	secrets []string
	outputs []string
}

func (w *leakWatch) secret(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.secrets = append(w.secrets, s)
}

func (w *leakWatch) output(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.outputs = append(w.outputs, s)
}

func (w *leakWatch) snapshot() (secrets, outputs []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.secrets...), append([]string(nil), w.outputs...)
}

// waitFor polls cond until it holds or fails the test after 45s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
