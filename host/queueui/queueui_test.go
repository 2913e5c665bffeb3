package queueui

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/outbox"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
)

const adminKey = "admin-key-0123456789abcdef"

// fakeUI answers "ui <method> <path> <body>" for anything.
var fakeUI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "ui %s %s %s", r.Method, r.URL.RequestURI(), body)
})

type clock struct{ t atomic.Pointer[time.Time] }

func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

type harness struct {
	h     http.Handler
	key   atomic.Pointer[string]
	clock *clock
	logs  *testlog.Buffer
}

func newHarness(ui http.Handler) *harness {
	h := &harness{clock: &clock{}, logs: &testlog.Buffer{}}
	h.clock.set(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	h.setKey(adminKey)
	h.h = New(ui, Options{
		Key: func() string { return *h.key.Load() },
		Log: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: h.clock.now,
	})
	return h
}

func (h *harness) setKey(k string) { h.key.Store(&k) }

func (h *harness) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, r)
	return w
}

// login posts the key to the form and returns the session cookie.
func (h *harness) login(t *testing.T, key, next string, tlsOn bool) (*httptest.ResponseRecorder, *http.Cookie) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/admin/queue/login", strings.NewReader(url.Values{"key": {key}, "next": {next}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if tlsOn {
		r.TLS = &tls.ConnectionState{}
	}
	w := h.do(r)
	for _, c := range w.Result().Cookies() {
		if c.Name == cookieName {
			return w, c
		}
	}
	return w, nil
}

// Nothing under the prefix but the login form answers without the key:
// a bearer header with it, or a session the form set, lets a request
// through, and nothing else does.
func TestEveryPathNeedsTheKey(t *testing.T) {
	t.Parallel()
	h := newHarness(fakeUI)
	_, session := h.login(t, adminKey, "", false)
	if session == nil {
		t.Fatal("no session cookie after logging in")
	}
	other := newHarness(fakeUI)
	other.setKey("another-admin-key-0123456789")
	_, foreign := other.login(t, "another-admin-key-0123456789", "", false)

	credentials := []struct {
		name   string
		header string
		cookie string
		want   int
	}{
		{name: "none", want: http.StatusUnauthorized},
		{name: "the key as a bearer", header: "Bearer " + adminKey, want: http.StatusOK},
		{name: "a wrong bearer", header: "Bearer " + adminKey + "x", want: http.StatusUnauthorized},
		{name: "the key without Bearer", header: adminKey, want: http.StatusUnauthorized},
		{name: "basic auth", header: "Basic " + adminKey, want: http.StatusUnauthorized},
		{name: "the session", cookie: session.Value, want: http.StatusOK},
		{name: "the session, but a wrong bearer", header: "Bearer nope", cookie: session.Value, want: http.StatusUnauthorized},
		{name: "another key's session", cookie: foreign.Value, want: http.StatusUnauthorized},
		{name: "the key as the cookie", cookie: adminKey, want: http.StatusUnauthorized},
		{name: "a later expiry with the session's MAC", cookie: "9999999999." + strings.SplitN(session.Value, ".", 2)[1], want: http.StatusUnauthorized},
		{name: "garbage", cookie: "x.y.z", want: http.StatusUnauthorized},
	}
	requests := []struct{ method, path, body string }{
		{"GET", "/admin/queue/", ""},
		{"GET", "/admin/queue/jobs", ""},
		{"GET", "/admin/queue/jobs/12", ""},
		{"GET", "/admin/queue/assets/main.js", ""},
		{"GET", "/admin/queue/api/jobs", ""},
		{"GET", "/admin/queue/api/jobs?state=available", ""},
		{"GET", "/admin/queue/api/jobs/12", ""},
		{"GET", "/admin/queue/api/queues", ""},
		{"GET", "/admin/queue/api/states", ""},
		{"GET", "/admin/queue/api/health-checks/complete", ""},
		{"HEAD", "/admin/queue/api/jobs", ""},
		{"POST", "/admin/queue/api/jobs/retry", `{"ids":["12"]}`},
		{"POST", "/admin/queue/api/jobs/cancel", `{"ids":["12"]}`},
		{"POST", "/admin/queue/api/jobs/delete", `{"ids":["12"]}`},
		{"PUT", "/admin/queue/api/queues/mail/pause", ""},
		{"PUT", "/admin/queue/api/queues/mail/resume", ""},
		{"PATCH", "/admin/queue/api/queues/mail", `{}`},
		{"DELETE", "/admin/queue/api/jobs/12", ""},
		{"OPTIONS", "/admin/queue/api/jobs", ""},
	}
	for _, c := range credentials {
		for _, req := range requests {
			r := httptest.NewRequest(req.method, req.path, strings.NewReader(req.body))
			if c.header != "" {
				r.Header.Set("Authorization", c.header)
			}
			if c.cookie != "" {
				r.AddCookie(&http.Cookie{Name: cookieName, Value: c.cookie})
			}
			w := h.do(r)
			reached := strings.HasPrefix(w.Body.String(), "ui ")
			if w.Code != c.want || reached != (c.want == http.StatusOK) {
				t.Errorf("%s: %s %s = %d (UI reached: %v), want %d", c.name, req.method, req.path, w.Code, reached, c.want)
			}
			if w.Code == http.StatusOK && req.method != "HEAD" && w.Body.String() != fmt.Sprintf("ui %s %s %s", req.method, req.path, req.body) {
				t.Errorf("%s: %s %s reached the UI as %q", c.name, req.method, req.path, w.Body)
			}
			if got := w.Header().Get("X-Frame-Options"); got != "DENY" {
				t.Errorf("%s: %s %s: X-Frame-Options %q, want DENY", c.name, req.method, req.path, got)
			}
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"level":"WARN","msg":"queue UI request refused: missing or wrong admin API key"`) {
		t.Errorf("no warning for a wrong key:\n%s", logs)
	}
	if strings.Contains(logs, adminKey) {
		t.Errorf("the key is in the log:\n%s", logs)
	}
}

// A browser without a session gets the login form (401); the form sets a
// session cookie holding no key (HttpOnly, SameSite=Strict, scoped to the
// prefix, Secure over TLS) and goes back to the page asked for, never to
// another site; the session ends after SessionTTL, with a new
// admin.api_key, and at logout.
func TestLogin(t *testing.T) {
	t.Parallel()
	h := newHarness(fakeUI)
	r := httptest.NewRequest(http.MethodGet, "/admin/queue/jobs?state=retryable", nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml")
	w := h.do(r)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `<form method="post" action="/admin/queue/login">`) ||
		!strings.Contains(w.Body.String(), `name="next" value="/admin/queue/jobs?state=retryable"`) {
		t.Fatalf("a browser without a session: %d\n%s", w.Code, w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("login page CSP %q", csp)
	}
	if w := h.do(httptest.NewRequest(http.MethodGet, "/admin/queue/login", nil)); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `type="password"`) {
		t.Errorf("GET login = %d %s", w.Code, w.Body)
	}

	w, c := h.login(t, "wrong-key-0123456789abcdef", "/admin/queue/jobs", false)
	if w.Code != http.StatusUnauthorized || c != nil || !strings.Contains(w.Body.String(), "That is not the admin API key.") {
		t.Errorf("login with a wrong key: %d, cookie %v", w.Code, c)
	}
	if !strings.Contains(h.logs.String(), `"msg":"queue UI login refused: wrong admin API key"`) {
		t.Errorf("no warning for the wrong key:\n%s", h.logs)
	}

	for _, tt := range []struct{ next, want string }{
		{"/admin/queue/jobs?state=retryable", "/admin/queue/jobs?state=retryable"},
		{"", "/admin/queue/"},
		{"https://evil.example/", "/admin/queue/"},
		{"//evil.example/admin/queue/", "/admin/queue/"},
		{"/admin/queuex", "/admin/queue/"},
		{"/admin/queue/login", "/admin/queue/"},
	} {
		w, c := h.login(t, adminKey, tt.next, false)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != tt.want || c == nil {
			t.Errorf("login with next %q: %d to %q, cookie %v; want 303 to %q", tt.next, w.Code, w.Header().Get("Location"), c, tt.want)
		}
	}
	_, c = h.login(t, adminKey, "", false)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/admin/queue/" || c.Secure || c.MaxAge != int(SessionTTL/time.Second) {
		t.Errorf("session cookie %+v", c)
	}
	if strings.Contains(c.Value, adminKey) {
		t.Errorf("the cookie holds the key: %q", c.Value)
	}
	if _, tc := h.login(t, adminKey, "", true); !tc.Secure {
		t.Errorf("the session cookie over TLS is not Secure")
	}
	if !strings.Contains(h.logs.String(), `"msg":"queue UI login","audit":true`) {
		t.Errorf("no audit line for the login:\n%s", h.logs)
	}

	get := func() int {
		r := httptest.NewRequest(http.MethodGet, "/admin/queue/api/jobs", nil)
		r.AddCookie(c)
		return h.do(r).Code
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("with the session: %d", code)
	}
	h.clock.add(SessionTTL - time.Minute)
	if code := get(); code != http.StatusOK {
		t.Errorf("a minute before the session ends: %d", code)
	}
	h.clock.add(time.Minute)
	if code := get(); code != http.StatusUnauthorized {
		t.Errorf("once the session ended: %d, want 401", code)
	}
	_, c = h.login(t, adminKey, "", false)
	h.setKey("a-new-admin-key-0123456789ab")
	if code := get(); code != http.StatusUnauthorized {
		t.Errorf("after admin.api_key changed: %d, want 401", code)
	}
	h.setKey("")
	if w, c := h.login(t, "", "", false); w.Code != http.StatusUnauthorized || c != nil {
		t.Errorf("login while admin.api_key is empty: %d, cookie %v", w.Code, c)
	}

	w = h.do(httptest.NewRequest(http.MethodPost, "/admin/queue/logout", nil))
	var cleared *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == cookieName {
			cleared = c
		}
	}
	if w.Code != http.StatusSeeOther || cleared == nil || cleared.MaxAge >= 0 || cleared.Value != "" {
		t.Errorf("logout: %d, cookie %+v", w.Code, cleared)
	}
	if w := h.do(httptest.NewRequest(http.MethodGet, "/admin/queue/logout", nil)); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET logout = %d, want 405", w.Code)
	}
}

// A change asked for from another site is refused even with the session;
// one through the UI writes an audit line with the jobs it names, and the
// UI gets the body whole.
func TestChangesAreSameOriginAndAudited(t *testing.T) {
	t.Parallel()
	h := newHarness(fakeUI)
	_, session := h.login(t, adminKey, "", false)
	body := `{"ids":["12","13"]}`
	r := httptest.NewRequest(http.MethodPost, "/admin/queue/api/jobs/cancel", strings.NewReader(body))
	r.AddCookie(session)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if w := h.do(r); w.Code != http.StatusForbidden || strings.HasPrefix(w.Body.String(), "ui ") {
		t.Errorf("a cross-site cancel with the session = %d %q, want 403", w.Code, w.Body)
	}
	r = httptest.NewRequest(http.MethodPost, "/admin/queue/login", strings.NewReader("key="+adminKey))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://evil.example")
	if w := h.do(r); w.Code != http.StatusForbidden {
		t.Errorf("a cross-origin login = %d, want 403", w.Code)
	}

	r = httptest.NewRequest(http.MethodPost, "/admin/queue/api/jobs/cancel", strings.NewReader(body))
	r.AddCookie(session)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if w := h.do(r); w.Code != http.StatusOK || w.Body.String() != "ui POST /admin/queue/api/jobs/cancel "+body {
		t.Errorf("a same-origin cancel = %d %q", w.Code, w.Body)
	}
	want := `"msg":"queue UI action","audit":true,"event":"queue_ui_action","method":"POST","path":"/api/jobs/cancel","job_ids":["12","13"],"auth":"session","status":200`
	if !strings.Contains(h.logs.String(), want) {
		t.Errorf("no audit line %s:\n%s", want, h.logs)
	}
}

// stuck fails every delivery for good: each job ends cancelled.
type stuck struct{}

func (stuck) Deliver(context.Context, *config.Config, courier.Message) (courier.Answer, error) {
	return courier.Answer{}, fmt.Errorf("look up identity: %w", kratosadmin.ErrNotFound)
}

type noObserver struct{}

func (noObserver) Job(string, string) {}

// River's real UI, served as serve mounts it: the index page, its assets
// and /api/jobs with the key; nothing without it, and a change refused
// without the key changes nothing.
func TestRiverUIBehindTheKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	log := slog.New(slog.DiscardHandler)
	if _, err := outbox.Migrate(ctx, dsn, log); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.Open(ctx, dsn, outbox.Options{Workers: 1, MaxAttempts: 3, Retention: time.Hour}, log)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := sealing.New([]string{"0123456789abcdef0123456789abcdef-queueui"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Keyring: kr, Queue: config.Queue{MaxAge: time.Hour}}
	if err := ob.Start(ctx, outbox.Deps{Config: func() *config.Config { return cfg }, Deliver: stuck{}, Observer: noObserver{}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ob.Stop(ctx)
	})
	if _, err := ob.Enqueue(ctx, courier.Message{Recipient: "user@example.org", Subject: "s", Body: "b", TemplateType: "login_code_valid"}); err != nil {
		t.Fatal(err)
	}
	var id int64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		jobs, err := ob.List(ctx, outbox.Filter{States: []string{"cancelled"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 1 {
			id = jobs[0].ID
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job was not discarded")
		}
	}

	ui, startUI, err := ob.UIHandler(Prefix, log)
	if err != nil {
		t.Fatal(err)
	}
	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := startUI(uctx); err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	mux := http.NewServeMux()
	mux.Handle(Prefix, New(ui, Options{Key: func() string { return adminKey }, Log: slog.New(slog.NewJSONHandler(logs, nil))}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	send := func(method, path, body string, auth bool) (int, string) {
		t.Helper()
		r, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth {
			r.Header.Set("Authorization", "Bearer "+adminKey)
		}
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, index := send("GET", "/admin/queue/", "", true)
	if code != http.StatusOK || !strings.Contains(index, "<title>River</title>") {
		t.Fatalf("index with the key: %d %.200s", code, index)
	}
	asset := regexp.MustCompile(`src="(/admin/queue/assets/[^"]+\.js)"`).FindStringSubmatch(index)
	if asset == nil {
		t.Fatalf("no script in the index:\n%s", index)
	}
	paths := []string{"/admin/queue/", "/admin/queue/jobs", asset[1], "/admin/queue/api/jobs?state=cancelled", fmt.Sprintf("/admin/queue/api/jobs/%d", id),
		"/admin/queue/api/queues", "/admin/queue/api/states", "/admin/queue/api/features", "/admin/queue/api/health-checks/complete"}
	for _, path := range paths {
		if code, body := send("GET", path, "", true); code != http.StatusOK {
			t.Errorf("GET %s with the key = %d %.200s", path, code, body)
		}
		if code, body := send("GET", path, "", false); code != http.StatusUnauthorized || strings.Contains(body, "River") {
			t.Errorf("GET %s without the key = %d %.200s, want 401", path, code, body)
		}
	}
	if code, body := send("GET", "/admin/queue/api/jobs?state=cancelled", "", true); !strings.Contains(body, fmt.Sprintf(`"id":%d`, id)) ||
		strings.Contains(body, "user@example.org") {
		t.Errorf("/api/jobs: %d %.300s, want the job, its message sealed", code, body)
	}

	ids := fmt.Sprintf(`{"ids":["%d"]}`, id)
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/admin/queue/api/jobs/retry", ids},
		{"POST", "/admin/queue/api/jobs/delete", ids},
		{"PUT", "/admin/queue/api/queues/mail/pause", ""},
	} {
		if code, _ := send(req.method, req.path, req.body, false); code != http.StatusUnauthorized {
			t.Errorf("%s %s without the key = %d, want 401", req.method, req.path, code)
		}
	}
	if jobs, _ := ob.List(ctx, outbox.Filter{States: []string{"cancelled"}}); len(jobs) != 1 {
		t.Fatalf("a refused request changed the job: %+v", jobs)
	}

	// With the key, through a login session like a browser's.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.PostForm(srv.URL+"/admin/queue/login", url.Values{"key": {adminKey}, "next": {"/admin/queue/jobs"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/admin/queue/jobs" || !strings.Contains(string(page), "<title>River</title>") {
		t.Fatalf("login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/admin/queue/api/jobs/retry", strings.NewReader(ids))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("retry through the session = %d", resp.StatusCode)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf(`"path":"/api/jobs/retry","job_ids":["%d"],"auth":"session","status":200`, id)) {
		t.Errorf("no audit line for the retry:\n%s", logs)
	}
	// The job ran again (and was discarded again).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		jobs, err := ob.List(ctx, outbox.Filter{States: []string{"cancelled"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 1 && jobs[0].Attempt == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retried job did not run again: %+v", jobs)
		}
	}
}
