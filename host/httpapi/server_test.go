package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/metrics"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

const apiKey = "test-api-key-0123456789"

var testKeys = func() *sealing.Keyring {
	k, err := sealing.New([]string{"0123456789abcdef0123456789abcdef-test"})
	if err != nil {
		panic(err)
	}
	return k
}()

// recorder stands in for the recovery service and the plugin, recording
// what the handler asked of them.
type recorder struct {
	verdict  recovery.Verdict
	checkErr error
	checks   []string

	mu       sync.Mutex
	resets   []recovery.Request
	policies []recovery.Policy
	sent     []*sdk.SendMessageRequest
	resetErr error
	sendErr  error
	// result is what Reset answers; the zero value is "sent".
	result recovery.Result
	// changed and changedErr are what PasswordChanged answers.
	changed    map[string]any
	changedErr error
}

func (r *recorder) Reset(_ context.Context, req recovery.Request, pol recovery.Policy) (recovery.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets = append(r.resets, req)
	r.policies = append(r.policies, pol)
	if r.resetErr != nil {
		return recovery.Result{}, r.resetErr
	}
	if r.result.Outcome == "" {
		return recovery.Result{Outcome: recovery.OutcomeSent}, nil
	}
	return r.result, nil
}

func (r *recorder) PasswordChanged(context.Context, string, recovery.Policy) (map[string]any, error) {
	return r.changed, r.changedErr
}

func (r *recorder) CheckPassword(_ context.Context, identifier, _ string, _ recovery.Policy) (recovery.Verdict, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, identifier)
	return r.verdict, r.checkErr
}

func (r *recorder) sender() *sdktest.Fake {
	return &sdktest.Fake{SendMessageF: func(_ context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.sent = append(r.sent, req)
		if r.sendErr != nil {
			return nil, r.sendErr
		}
		return &sdk.SendMessageResponse{ServerReply: "250 ok"}, nil
	}}
}

func testConfig(enabled bool) *config.Config {
	return &config.Config{
		Enabled:  enabled,
		Webhook:  config.Webhook{APIKey: apiKey},
		Kratos:   config.Kratos{LoginUIURL: "http://127.0.0.1:4455/login", SettingsUIURL: "http://127.0.0.1:4455/settings"},
		Password: config.Password{TTL: time.Hour, Cooldown: time.Minute, KeepCurrentUntilUsed: true, RevokeSessions: true},
		Timeouts: config.Timeouts{Kratos: time.Second, SMTP: time.Second, Courier: 8 * time.Second},
		Keyring:  testKeys,
	}
}

func newServer(t *testing.T, enabled bool, rec *recorder, checks ...Check) (http.Handler, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	cfg := testConfig(enabled)
	m := metrics.New(func() int { return 3 })
	s := New(Deps{
		Config:   func() *config.Config { return cfg },
		Reset:    rec,
		Send:     rec.sender(),
		Sessions: rec,
		Ready:    checks,
		Now:      func() time.Time { return testNow },
		Log:      slog.New(slog.NewJSONHandler(&logs, nil)),
		Observer: m,
		Metrics:  m.Handler(),
	})
	return s.Handler(), &logs
}

func sample(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/courier-recovery_code_valid.json")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func with(t *testing.T, raw []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func post(h http.Handler, auth string, body io.Reader) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/courier", body)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// Each handled courier message logs where its time went, fields the
// integration benchmark reads (medianSplit): the reset reports its own
// Kratos and plugin time, and a mail sent as Kratos rendered it is plugin
// time too.
func TestCourierLogsWhereItsTimeWent(t *testing.T) {
	t.Parallel()
	const sendTime = 2 * time.Millisecond
	for _, tc := range []struct {
		name                    string
		result                  recovery.Result
		kratos, plugin, atLeast time.Duration
	}{
		{"temporary password", recovery.Result{Outcome: recovery.OutcomeSent, Spent: recovery.Spent{Kratos: 4 * time.Millisecond, Plugin: 3 * time.Millisecond}},
			4 * time.Millisecond, 3 * time.Millisecond, 0},
		{"Kratos's own message", recovery.Result{Outcome: recovery.OutcomeKratosMessage, Reason: recovery.ReasonUnverifiableHash, Spent: recovery.Spent{Kratos: 4 * time.Millisecond}},
			4 * time.Millisecond, 0, sendTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			cfg := testConfig(true)
			m := metrics.New(func() int { return 0 })
			h := New(Deps{
				Config: func() *config.Config { return cfg },
				Reset:  &recorder{result: tc.result},
				Send: &sdktest.Fake{SendMessageF: func(context.Context, *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
					time.Sleep(sendTime)
					return &sdk.SendMessageResponse{ServerReply: "250 ok"}, nil
				}},
				Now:      func() time.Time { return testNow },
				Log:      slog.New(slog.NewJSONHandler(&logs, nil)),
				Observer: m,
				Metrics:  m.Handler(),
			}).Handler()
			if w := post(h, "Bearer "+apiKey, bytes.NewReader(sample(t))); w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			var got struct {
				Total  int64 `json:"total_us"`
				Kratos int64 `json:"kratos_us"`
				Plugin int64 `json:"plugin_us"`
				Own    int64 `json:"own_us"`
			}
			for line := range strings.SplitSeq(logs.String(), "\n") {
				if strings.Contains(line, `"msg":"courier message handled"`) {
					if err := json.Unmarshal([]byte(line), &got); err != nil {
						t.Fatal(err)
					}
				}
			}
			plugin := time.Duration(got.Plugin) * time.Microsecond
			if time.Duration(got.Kratos)*time.Microsecond != tc.kratos || plugin < tc.plugin+tc.atLeast || (tc.atLeast == 0 && plugin != tc.plugin) {
				t.Errorf("logged kratos_us=%d plugin_us=%d, want %d and %d (plus at least %s of sending)", got.Kratos, got.Plugin, tc.kratos.Microseconds(), tc.plugin.Microseconds(), tc.atLeast)
			}
			if d := got.Own - (got.Total - got.Kratos - got.Plugin); d < -1 || d > 1 { // each field is rounded down to a µs
				t.Errorf("own_us=%d, want total_us-kratos_us-plugin_us = %d", got.Own, got.Total-got.Kratos-got.Plugin)
			}
		})
	}
}

func TestRecoveryBecomesAReset(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	h, _ := newServer(t, true, rec)
	w := post(h, "Bearer "+apiKey, bytes.NewReader(sample(t)))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	want := []recovery.Request{{IdentityID: "6da9db03-4d06-4da9-9684-9133a883a5fa", Recipient: "alice@example.com", Trigger: "self-service",
		Message: "693553", KratosCode: "693553"}}
	if diff := cmp.Diff(want, rec.resets); diff != "" {
		t.Errorf("resets (-want +got):\n%s", diff)
	}
	wantPol := recovery.Policy{TTL: time.Hour, Cooldown: time.Minute, KeepCurrent: true, Keys: testKeys, RevokeSessions: true, LoginURL: "http://127.0.0.1:4455/login", KratosTimeout: time.Second, SMTPTimeout: time.Second}
	if diff := cmp.Diff(wantPol, rec.policies[0], cmp.Comparer(func(a, b *sealing.Keyring) bool { return a == b })); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	if len(rec.sent) != 0 {
		t.Errorf("the handler sent %d mails itself; the reset sends the only one", len(rec.sent))
	}
}

// A link-method message (recovery_valid) hands its link to the reset, for
// the templates' .RecoveryURL, as a code-method one hands its code; neither
// reaches the log.
func TestRecoveryLinkReachesTheReset(t *testing.T) {
	t.Parallel()
	const link = "http://127.0.0.1:4433/self-service/recovery?flow=0b3e&token=LinkTokSecret"
	rec := &recorder{}
	h, logs := newServer(t, true, rec)
	body := with(t, sample(t), func(m map[string]any) {
		m["template_type"] = "recovery_valid"
		data := m["template_data"].(map[string]any)
		delete(data, "recovery_code")
		data["recovery_url"] = link
	})
	if w := post(h, "Bearer "+apiKey, bytes.NewReader(body)); w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	want := []recovery.Request{{IdentityID: "6da9db03-4d06-4da9-9684-9133a883a5fa", Recipient: "alice@example.com", Trigger: "self-service",
		Message: link, KratosURL: link}}
	if diff := cmp.Diff(want, rec.resets); diff != "" {
		t.Errorf("resets (-want +got):\n%s", diff)
	}
	if strings.Contains(logs.String(), "LinkTokSecret") {
		t.Errorf("the link reached the log:\n%s", logs)
	}
}

// When the gateway cannot take a recovery over (the reset changed nothing),
// Kratos's own message goes out as Kratos rendered it, and only a mail the
// SMTP server accepted is answered 2xx.
func TestRecoveryLeftToKratosSendsKratosMessage(t *testing.T) {
	t.Parallel()
	for _, sendErr := range []error{nil, fmt.Errorf("smtp connect: %w", sdk.ErrUnavailable)} {
		rec := &recorder{result: recovery.Result{Outcome: recovery.OutcomeKratosMessage, Reason: recovery.ReasonUnverifiableHash}, sendErr: sendErr}
		h, logs := newServer(t, true, rec)
		w := post(h, "Bearer "+apiKey, bytes.NewReader(sample(t)))
		if sendErr != nil {
			if w.Code != http.StatusServiceUnavailable {
				t.Errorf("SMTP down: HTTP %d %s, want 503 so Kratos retries", w.Code, w.Body)
			}
			continue
		}
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"delivery":"kratos_message"`) {
			t.Fatalf("HTTP %d %s, want 200 with delivery kratos_message", w.Code, w.Body)
		}
		want := &sdk.RenderedMessage{Subject: "Recover access to your account",
			TextBody: "Hi,\n\nplease recover access to your account by entering the following code:\n\n693553\n"}
		if len(rec.sent) != 1 || rec.sent[0].Password != nil || !cmp.Equal(want, rec.sent[0].Rendered) || rec.sent[0].Recipient != "alice@example.com" {
			t.Errorf("sent %+v, want Kratos's own message to the recipient", rec.sent)
		}
		if !strings.Contains(logs.String(), `"delivery":"kratos_message"`) {
			t.Errorf("the log does not say Kratos's message went out:\n%s", logs)
		}
	}
}

// The whole courier answer has a deadline below Kratos v26's 10 s.
func TestCourierDeadline(t *testing.T) {
	t.Parallel()
	var deadline time.Time
	rec := &recorder{}
	s := &deadlineRecorder{recorder: rec, deadline: &deadline}
	cfg := testConfig(true)
	m := metrics.New(func() int { return 0 })
	hh := New(Deps{Config: func() *config.Config { return cfg }, Reset: s, Send: rec.sender(), Sessions: rec, Now: time.Now,
		Log: slog.New(slog.DiscardHandler), Observer: m, Metrics: m.Handler()}).Handler()
	before := time.Now()
	if w := post(hh, "Bearer "+apiKey, bytes.NewReader(sample(t))); w.Code != http.StatusOK {
		t.Fatalf("HTTP %d", w.Code)
	}
	if deadline.IsZero() || deadline.After(before.Add(config.MaxCourierTimeout)) {
		t.Errorf("the reset ran with deadline %v, want one within %s of the request", deadline, config.MaxCourierTimeout)
	}
}

type deadlineRecorder struct {
	*recorder
	deadline *time.Time
}

func (d *deadlineRecorder) Reset(ctx context.Context, req recovery.Request, pol recovery.Policy) (recovery.Result, error) {
	*d.deadline, _ = ctx.Deadline()
	return d.recorder.Reset(ctx, req, pol)
}

func TestOtherMailsGoOutAsKratosRenderedThem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		enabled bool
		edit    func(m map[string]any)
		want    *sdk.RenderedMessage
	}{
		{
			name:    "recovery while disabled",
			enabled: false,
			edit:    func(map[string]any) {},
			want: &sdk.RenderedMessage{Subject: "Recover access to your account",
				TextBody: "Hi,\n\nplease recover access to your account by entering the following code:\n\n693553\n"},
		},
		{
			name:    "verification while enabled",
			enabled: true,
			edit: func(m map[string]any) {
				m["template_type"] = "verification_code_valid"
				m["subject"] = "Please verify your email address"
				m["body"] = "Hi, please verify your account by entering the following code:\n\n123456\n"
			},
			want: &sdk.RenderedMessage{Subject: "Please verify your email address",
				TextBody: "Hi, please verify your account by entering the following code:\n\n123456\n"},
		},
		{
			name:    "custom HTML template",
			enabled: true,
			edit: func(m map[string]any) {
				m["template_type"] = "login_code_valid"
				m["body"] = "<html><body><p>Your code: 123456</p></body></html>"
			},
			want: &sdk.RenderedMessage{Subject: "Recover access to your account",
				HTMLBody: "<html><body><p>Your code: 123456</p></body></html>"},
		},
		{
			// Kratos v26 sends its HTML template's output as html_body:
			// the mail has both parts, whatever body looks like.
			name:    "html_body from Kratos v26",
			enabled: true,
			edit: func(m map[string]any) {
				m["template_type"] = "verification_code_valid"
				m["body"] = "<p>code: 123456</p> in the plain-text template"
				m["html_body"] = "<html><body><p>Your code: 123456</p></body></html>"
			},
			want: &sdk.RenderedMessage{Subject: "Recover access to your account",
				TextBody: "<p>code: 123456</p> in the plain-text template",
				HTMLBody: "<html><body><p>Your code: 123456</p></body></html>"},
		},
		{
			name:    "empty html_body",
			enabled: true,
			edit: func(m map[string]any) {
				m["template_type"] = "verification_code_valid"
				m["html_body"] = ""
			},
			want: &sdk.RenderedMessage{Subject: "Recover access to your account",
				TextBody: "Hi,\n\nplease recover access to your account by entering the following code:\n\n693553\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			h, _ := newServer(t, tt.enabled, rec)
			w := post(h, "Bearer "+apiKey, bytes.NewReader(with(t, sample(t), tt.edit)))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if len(rec.resets) != 0 {
				t.Errorf("a reset ran for %s", tt.name)
			}
			want := []*sdk.SendMessageRequest{{Recipient: "alice@example.com", Rendered: tt.want}}
			if diff := cmp.Diff(want, rec.sent); diff != "" {
				t.Errorf("sent (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRefusedRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		auth       string
		body       func(t *testing.T) io.Reader
		wantStatus int
		wantError  string
	}{
		{"no key", http.MethodPost, "", okBody, http.StatusUnauthorized, "API key"},
		{"wrong key", http.MethodPost, "Bearer " + apiKey + "x", okBody, http.StatusUnauthorized, "API key"},
		{"key without Bearer", http.MethodPost, apiKey, okBody, http.StatusUnauthorized, "API key"},
		{"wrong method", http.MethodGet, "Bearer " + apiKey, okBody, http.StatusMethodNotAllowed, ""},
		{"not JSON", http.MethodPost, "Bearer " + apiKey, text("hello"), http.StatusBadRequest, "not a JSON object"},
		{"JSON array", http.MethodPost, "Bearer " + apiKey, text("[1,2]"), http.StatusBadRequest, "must be a JSON"},
		{"wrong type", http.MethodPost, "Bearer " + apiKey, text(`{"recipient": 7}`), http.StatusBadRequest, "field recipient must be a JSON string"},
		{"no recipient", http.MethodPost, "Bearer " + apiKey, edited(func(m map[string]any) { delete(m, "recipient") }), http.StatusBadRequest, "recipient is missing"},
		{"CRLF in recipient", http.MethodPost, "Bearer " + apiKey, edited(func(m map[string]any) { m["recipient"] = "alice@example.com\r\nBcc: eve@example.com" }), http.StatusBadRequest, "recipient contains CR or LF"},
		{"CRLF in subject", http.MethodPost, "Bearer " + apiKey, edited(func(m map[string]any) { m["subject"] = "Hi\r\nBcc: eve@example.com" }), http.StatusBadRequest, "subject contains CR or LF"},
		{"no template type", http.MethodPost, "Bearer " + apiKey, edited(func(m map[string]any) { delete(m, "template_type") }), http.StatusBadRequest, "template_type is missing"},
		{"sms", http.MethodPost, "Bearer " + apiKey, edited(func(m map[string]any) { m["message_type"] = "sms" }), http.StatusBadRequest, "email only"},
		{"recovery without identity", http.MethodPost, "Bearer " + apiKey, edited(func(m map[string]any) { m["template_data"] = map[string]any{} }), http.StatusBadRequest, "identity.id is missing"},
		{"huge body", http.MethodPost, "Bearer " + apiKey, func(*testing.T) io.Reader {
			return io.MultiReader(strings.NewReader(`{"recipient":"`), strings.NewReader(strings.Repeat("a", MaxBodyBytes)), strings.NewReader(`"}`))
		}, http.StatusRequestEntityTooLarge, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			h, logs := newServer(t, true, rec)
			req := httptest.NewRequest(tt.method, "/courier", tt.body(t))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			if !strings.Contains(w.Body.String(), tt.wantError) {
				t.Errorf("body %q does not say %q", w.Body, tt.wantError)
			}
			if len(rec.resets)+len(rec.sent) != 0 {
				t.Errorf("a refused request caused %d resets and %d mails", len(rec.resets), len(rec.sent))
			}
			if strings.Contains(logs.String()+w.Body.String(), apiKey) {
				t.Errorf("the API key appears in the log or the answer")
			}
		})
	}
}

func okBody(t *testing.T) io.Reader { return bytes.NewReader(sample(t)) }

func text(s string) func(*testing.T) io.Reader {
	return func(*testing.T) io.Reader { return strings.NewReader(s) }
}

func edited(edit func(m map[string]any)) func(*testing.T) io.Reader {
	return func(t *testing.T) io.Reader { return bytes.NewReader(with(t, sample(t), edit)) }
}

func TestFailuresMapToStatusesKratosRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("look up identity: %w", kratosadmin.ErrNotFound), http.StatusNotFound},
		{fmt.Errorf("identity x: %w", recovery.ErrRecipientMismatch), http.StatusUnprocessableEntity},
		{fmt.Errorf("set: %w", kratosadmin.ErrUnavailable), http.StatusServiceUnavailable},
		{fmt.Errorf("set: %w", kratosadmin.ErrRejected), http.StatusUnprocessableEntity},
		{fmt.Errorf("smtp connect: %w", sdk.ErrUnavailable), http.StatusServiceUnavailable},
		{fmt.Errorf("smtp rcpt_to: %w", sdk.ErrRejected), http.StatusBadGateway},
		{fmt.Errorf("render: %w", sdk.ErrInvalidArgument), http.StatusUnprocessableEntity},
		{fmt.Errorf("send: %w", context.DeadlineExceeded), http.StatusGatewayTimeout},
		{errors.New("plugin exploded"), http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			t.Parallel()
			rec := &recorder{resetErr: tt.err}
			h, logs := newServer(t, true, rec)
			w := post(h, "Bearer "+apiKey, bytes.NewReader(sample(t)))
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if !strings.Contains(logs.String(), tt.err.Error()) {
				t.Errorf("log does not name the failure %q:\n%s", tt.err, logs)
			}
			// Kratos retries every non-2xx, a 404 or 422 too.
			if !strings.Contains(logs.String(), `"kratos_retries":true`) {
				t.Errorf("log does not say Kratos retries the %d:\n%s", tt.want, logs)
			}
		})
	}
}

func TestPassThroughFailureIsRetryable(t *testing.T) {
	t.Parallel()
	rec := &recorder{sendErr: fmt.Errorf("smtp connect: dial tcp 127.0.0.1:1: connection refused: %w", sdk.ErrUnavailable)}
	h, logs := newServer(t, false, rec)
	w := post(h, "Bearer "+apiKey, bytes.NewReader(sample(t)))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503 so Kratos retries", w.Code)
	}
	if !strings.Contains(logs.String(), "smtp connect") {
		t.Errorf("log does not name the SMTP stage:\n%s", logs)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	failing := Check{Name: "kratos", Run: func(context.Context) error { return errors.New("connection refused") }}
	passing := Check{Name: "plugin", Run: func(context.Context) error { return nil }}

	h, _ := newServer(t, true, &recorder{}, passing, failing)
	for path, want := range map[string]int{"/health/alive": 200, "/health/ready": 503} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("%s = %d, want %d", path, w.Code, want)
		}
		if path == "/health/ready" && (!strings.Contains(w.Body.String(), `"kratos":"connection refused"`) || strings.Contains(w.Body.String(), `"plugin"`)) {
			t.Errorf("readiness body %s should name exactly the failing check", w.Body)
		}
	}
	h, _ = newServer(t, true, &recorder{}, passing)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health/ready", nil))
	if w.Code != http.StatusOK {
		t.Errorf("ready with passing checks = %d", w.Code)
	}
}

func TestMetricsCountWhatHappened(t *testing.T) {
	t.Parallel()
	h, _ := newServer(t, true, &recorder{})
	post(h, "Bearer "+apiKey, bytes.NewReader(sample(t)))
	post(h, "Bearer "+apiKey, bytes.NewReader(with(t, sample(t), func(m map[string]any) { m["template_type"] = "verification_code_valid" })))
	post(h, "Bearer "+apiKey, strings.NewReader("not json"))
	post(h, "", bytes.NewReader(sample(t)))
	hook(h, "/hooks/password", "Bearer "+apiKey, []byte(`{"identifier":"a","password":"Secret-Password-1"}`))

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`kratos_email_gateway_messages_total{outcome="sent",template_type="recovery_code_valid"} 1`,
		`kratos_email_gateway_messages_total{outcome="as_rendered",template_type="verification_code_valid"} 1`,
		`kratos_email_gateway_messages_total{outcome="refused",template_type="other"} 1`,
		`kratos_email_gateway_resets_total{outcome="sent",trigger="self-service"} 1`,
		`kratos_email_gateway_password_hook_total{verdict=""} 1`,
		`kratos_email_gateway_plugin_restarts_total 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, secret := range []string{apiKey, "Secret-Password-1", "alice@example.com"} {
		if strings.Contains(body, secret) {
			t.Errorf("metrics carry %q", secret)
		}
	}
}

// Deeply nested or oversized JSON is refused without large allocations:
// the body is capped before it is read, and decoding stops at the first
// value of the wrong shape.
func TestHostileJSONIsCheap(t *testing.T) {
	h, _ := newServer(t, true, &recorder{})
	tests := map[string][]byte{
		"deep nesting":   append([]byte(`{"recipient":`), bytes.Repeat([]byte("["), MaxBodyBytes-20)...),
		"huge string":    []byte(`{"recipient":"` + strings.Repeat("x", 4*MaxBodyBytes) + `"}`),
		"many fields":    []byte(`{` + strings.Repeat(`"a":1,`, MaxBodyBytes/6-2) + `"b":1}`),
		"wrong top type": bytes.Repeat([]byte("1"), MaxBodyBytes-1),
	}
	for name, body := range tests {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w := post(h, "Bearer "+apiKey, bytes.NewReader(body))
		runtime.ReadMemStats(&after)
		if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: HTTP %d, want 400 or 413", name, w.Code)
		}
		// Reading the capped body costs about 2x its size; decoding must
		// not multiply it.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*MaxBodyBytes {
			t.Errorf("%s: %d MiB allocated for a request capped at 1 MiB", name, alloc>>20)
		}
	}
}

// A call with a wrong API key makes the host unready, naming the path and
// counting it, until a correctly keyed call arrives: Kratos with a wrong key
// fails every courier message and every password login.
func TestWrongKeyMakesTheHostUnreadyUntilARightOne(t *testing.T) {
	t.Parallel()
	h, _ := newServer(t, true, &recorder{})
	ready := func() (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health/ready", nil))
		return w.Code, w.Body.String()
	}
	if code, body := ready(); code != http.StatusOK {
		t.Fatalf("ready before any call = %d %s", code, body)
	}
	if w := hook(h, "/hooks/login", "Bearer wrong-key-0123456789", loginBody(t, nil)); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong key: HTTP %d", w.Code)
	}
	code, body := ready()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"webhook_key"`) || !strings.Contains(body, "/hooks/login") {
		t.Errorf("ready after a wrong key = %d %s, want 503 naming webhook_key and the path", code, body)
	}
	if strings.Contains(body, "wrong-key-0123456789") || strings.Contains(body, apiKey) {
		t.Errorf("readiness shows a key: %s", body)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(w.Body.String(), `kratos_email_gateway_unauthorized_total{path="/hooks/login"} 1`) {
		t.Errorf("no metric counts the refused call")
	}
	if w := hook(h, "/hooks/login", "Bearer "+apiKey, loginBody(t, nil)); w.Code != http.StatusOK {
		t.Fatalf("right key: HTTP %d", w.Code)
	}
	if code, body := ready(); code != http.StatusOK {
		t.Errorf("ready after a correctly keyed call = %d %s", code, body)
	}
}

type unproven string

func (u unproven) Unproven() string { return string(u) }

// While the migration hook is unproven, a recovery's policy says so (the
// reset then leaves it to Kratos) and readiness reports it without failing.
func TestUnprovenWiringReachesThePolicyAndReadiness(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	cfg := testConfig(true)
	m := metrics.New(func() int { return 0 })
	h := New(Deps{Config: func() *config.Config { return cfg }, Reset: rec, Send: rec.sender(), Sessions: rec, Now: time.Now,
		Log: slog.New(slog.DiscardHandler), Observer: m, Metrics: m.Handler(), Wiring: unproven("password migration hook: HTTP 500")}).Handler()
	if w := post(h, "Bearer "+apiKey, bytes.NewReader(sample(t))); w.Code != http.StatusOK {
		t.Fatalf("HTTP %d", w.Code)
	}
	if got := rec.policies[0].HookUnproven; got != "password migration hook: HTTP 500" {
		t.Errorf("policy.HookUnproven = %q", got)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health/ready", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"status":"degraded"`) || !strings.Contains(w.Body.String(), `"wiring":"unverified: password migration hook: HTTP 500"`) {
		t.Errorf("readiness = %d %s, want 200 degraded with the reason", w.Code, w.Body)
	}
}

// The wiring check's canary message is answered 2xx and never sent.
func TestCanaryMessageIsNeverSent(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	h, _ := newServer(t, true, rec)
	for _, tmpl := range []string{"recovery_code_valid", "verification_code_valid"} {
		body := with(t, sample(t), func(m map[string]any) {
			m["recipient"] = "kratos-email-gateway-canary-2@canary.invalid"
			m["template_type"] = tmpl
		})
		w := post(h, "Bearer "+apiKey, bytes.NewReader(body))
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"status":"canary"`) {
			t.Errorf("%s: HTTP %d %s, want 200 canary", tmpl, w.Code, w.Body)
		}
	}
	if len(rec.sent) != 0 || len(rec.resets) != 0 {
		t.Errorf("a canary message was sent (%d) or reset (%d)", len(rec.sent), len(rec.resets))
	}
	if w := post(h, "Bearer wrong-key-0123456789", bytes.NewReader(with(t, sample(t), func(m map[string]any) {
		m["recipient"] = "kratos-email-gateway-canary-2@canary.invalid"
	}))); w.Code != http.StatusUnauthorized {
		t.Errorf("canary with a wrong key: HTTP %d, want 401", w.Code)
	}
}

// fakeOutbox stands in for package outbox, which runs against PostgreSQL
// in its own tests and in integration/.
type fakeOutbox struct {
	got []courier.Message
	err error
}

func (f *fakeOutbox) Enqueue(_ context.Context, msg courier.Message) (courier.Answer, error) {
	if f.err != nil {
		return courier.Answer{}, f.err
	}
	f.got = append(f.got, msg)
	return courier.Answer{Status: "queued", Delivery: "queued"}, nil
}

// With an outbox, /courier stores the message (after authentication and
// validation, as without) and answers at once: no reset, no mail now; a
// store that fails is 503 so Kratos keeps the message and retries.
func TestCourierWithOutbox(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		err        error
		auth       string
		body       func(t *testing.T) []byte
		wantStatus int
		wantStored int
	}{
		{name: "stored", auth: "Bearer " + apiKey, body: sample, wantStatus: http.StatusOK, wantStored: 1},
		{name: "store down", err: errors.New("store the message: connection refused; Kratos keeps it and retries"), auth: "Bearer " + apiKey, body: sample,
			wantStatus: http.StatusServiceUnavailable},
		{name: "wrong key", auth: "Bearer nope", body: sample, wantStatus: http.StatusUnauthorized},
		{name: "invalid", auth: "Bearer " + apiKey, body: func(t *testing.T) []byte {
			return with(t, sample(t), func(m map[string]any) { m["recipient"] = "a@example.org\r\nBcc: b@example.org" })
		}, wantStatus: http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			ob := &fakeOutbox{err: tt.err}
			cfg := testConfig(true)
			m := metrics.New(func() int { return 0 })
			h := New(Deps{Config: func() *config.Config { return cfg }, Reset: rec, Send: rec.sender(), Sessions: rec,
				Now: time.Now, Log: slog.New(slog.DiscardHandler), Observer: m, Metrics: m.Handler(), Outbox: ob}).Handler()
			w := post(h, tt.auth, bytes.NewReader(tt.body(t)))
			if w.Code != tt.wantStatus || len(ob.got) != tt.wantStored {
				t.Fatalf("HTTP %d %s, stored %d; want %d and %d", w.Code, w.Body, len(ob.got), tt.wantStatus, tt.wantStored)
			}
			if len(rec.resets) != 0 || len(rec.sent) != 0 {
				t.Errorf("%d resets and %d mails while Kratos waited; the outbox's workers do them", len(rec.resets), len(rec.sent))
			}
			if tt.wantStored == 1 {
				if got := ob.got[0]; got.IdentityID == "" || got.RecoveryCode == "" || got.TemplateType != courier.TemplateRecoveryCodeValid {
					t.Errorf("stored %+v, want the identity, the code and the template type", got)
				}
				if !strings.Contains(w.Body.String(), `"status":"queued"`) {
					t.Errorf("answer %s, want status queued", w.Body)
				}
			}
		})
	}
}
