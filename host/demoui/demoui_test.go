package demoui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The flows in testdata/ are Kratos v1.3.1's answers, captured with curl
// from a Kratos started with configs/kratos (public API on 127.0.0.1:14433):
// a browser flow started at /self-service/<flow>/browser, then read from
// /self-service/<flow>/flows?id= with the cookies Kratos set. The *-invalid
// ones follow a submission Kratos refused, recovery-sent one that sent the
// mail, settings-flagged one for an identity with
// metadata_public.password_change_required, settings-success one after a new
// password was saved; settings is the same user's before the flag was set.

// fakeKratos serves captured answers of Kratos's public API and records
// what the UI sent.
type fakeKratos struct {
	*httptest.Server
	t *testing.T

	mu sync.Mutex
	// answers maps a path to a status and a testdata file ("" = no body).
	answers map[string]answer
	// cookies are the Cookie headers received, by path.
	cookies map[string]string
	queries map[string]url.Values
}

type answer struct {
	status int
	file   string
}

func newFakeKratos(t *testing.T, answers map[string]answer) *fakeKratos {
	t.Helper()
	k := &fakeKratos{t: t, answers: answers, cookies: map[string]string{}, queries: map[string]url.Values{}}
	k.Server = httptest.NewServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.Close)
	return k
}

func (k *fakeKratos) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.cookies[r.URL.Path] = r.Header.Get("Cookie")
	k.queries[r.URL.Path] = r.URL.Query()
	a, ok := k.answers[r.URL.Path]
	k.mu.Unlock()
	if r.Header.Get("Accept") != "application/json" {
		k.t.Errorf("%s without Accept: application/json", r.URL.Path)
	}
	if !ok {
		http.Error(w, `{"error":{"code":404}}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	if a.file != "" {
		_, _ = w.Write(testdata(k.t, a.file))
	}
}

// set changes the answer for path.
func (k *fakeKratos) set(path string, a answer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.answers[path] = a
}

func (k *fakeKratos) cookie(path string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cookies[path]
}

func (k *fakeKratos) query(path string) url.Values {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.queries[path]
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

const (
	mailpit       = "http://127.0.0.1:8025"
	browserCookie = "csrf_token_abc=token-value; ory_kratos_session=session-value"
)

// get sends a browser's GET to the UI and returns the response with its body.
func get(t *testing.T, h http.Handler, target string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Cookie", browserCookie)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result(), rec.Body.String()
}

func newHandler(k *fakeKratos) http.Handler {
	return New(Config{KratosPublicURL: k.URL + "/", MailpitURL: mailpit}, nil)
}

func TestFlowsWithoutIDStartAtKratos(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{})
	h := newHandler(k)
	for _, name := range flowNames() {
		resp, _ := get(t, h, "/"+name)
		if want := k.URL + "/self-service/" + name + "/browser"; resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("GET /%s: HTTP %d to %q, want 303 to %q", name, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	resp, _ := get(t, h, "/login?return_to="+url.QueryEscape("http://127.0.0.1:4455/settings"))
	if want := k.URL + "/self-service/login/browser?return_to=http%3A%2F%2F127.0.0.1%3A4455%2Fsettings"; resp.Header.Get("Location") != want {
		t.Errorf("return_to: redirected to %q, want %q", resp.Header.Get("Location"), want)
	}
}

func TestLoginFlowRendersKratosForm(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/self-service/login/flows": {http.StatusOK, "login-invalid.json"}})
	resp, body := get(t, newHandler(k), "/login?flow=77f49883-606c-4abd-b919-dd3af68cd9b7")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d\n%s", resp.StatusCode, body)
	}
	if got := k.cookie("/self-service/login/flows"); got != browserCookie {
		t.Errorf("Kratos got Cookie %q, want the browser's %q", got, browserCookie)
	}
	if got := k.query("/self-service/login/flows").Get("id"); got != "77f49883-606c-4abd-b919-dd3af68cd9b7" {
		t.Errorf("Kratos asked for flow %q", got)
	}
	if n := strings.Count(body, "<form "); n != 1 {
		t.Errorf("%d forms, want 1", n)
	}
	for _, want := range []string{
		`<form action="http://127.0.0.1:14433/self-service/login?flow=77f49883-606c-4abd-b919-dd3af68cd9b7" method="POST">`,
		`<input type="text" name="identifier" value="alice@example.com" required>`,
		`<input type="password" name="password" required autocomplete="current-password">`,
		`<button type="submit" name="method" value="password">Sign in with password</button>`,
		`<div class="msg error" data-id="4000006">The provided credentials are invalid`,
		`<a href="/recovery">Forgot your password?</a>`,
		`<a href="http://127.0.0.1:8025">Inbox (Mailpit)</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
	if !regexp.MustCompile(`<input type="hidden" name="csrf_token" value="[A-Za-z0-9/=&#;]{40,}">`).MatchString(body) {
		t.Errorf("no CSRF token in the form:\n%s", body)
	}
	if strings.Contains(body, "<script") {
		t.Error("page has a script")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q: the page holds a CSRF token", cc)
	}
}

func TestSettingsRendersOneFormPerGroupWithErrors(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/self-service/settings/flows": {http.StatusOK, "settings-invalid.json"}})
	_, body := get(t, newHandler(k), "/settings?flow=d18206fd-fef2-440c-85ab-18f90a880c41")
	forms := regexp.MustCompile(`(?s)<form .*?</form>`).FindAllString(body, -1)
	if len(forms) != 2 {
		t.Fatalf("%d forms, want profile and password\n%s", len(forms), body)
	}
	// settings-invalid.json is the flagged user's: the password form comes first.
	password, profile := forms[0], forms[1]
	for _, f := range forms {
		if !strings.Contains(f, `name="csrf_token"`) {
			t.Errorf("form without the CSRF token:\n%s", f)
		}
	}
	if !strings.Contains(profile, "<h2>Profile</h2>") || !strings.Contains(profile, `name="traits.email" value="alice@example.com"`) ||
		!strings.Contains(profile, `value="profile"`) || strings.Contains(profile, `name="password"`) {
		t.Errorf("profile form:\n%s", profile)
	}
	if !strings.Contains(password, "<h2>Change password</h2>") || strings.Contains(password, "traits.email") ||
		!strings.Contains(password, `<button type="submit" name="method" value="password">Save</button>`) {
		t.Errorf("password form:\n%s", password)
	}
	// The error is rendered right after the input it belongs to.
	if !regexp.MustCompile(`name="password"[^>]*>\s*</label>\s*<p class="node-msg error">The password must be at least 8 characters long, but got 5.</p>`).MatchString(password) {
		t.Errorf("password error not next to its input:\n%s", password)
	}
}

func TestSettingsExplainsForcedChange(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/self-service/settings/flows": {http.StatusOK, "settings.json"}})
	_, body := get(t, newHandler(k), "/settings?flow=158a0286-7a59-44ad-8c54-061ad5ebe7b1")
	if strings.Contains(body, "temporary password") {
		t.Errorf("forced-change notice for an identity without the flag:\n%s", body)
	}

	k.set("/self-service/settings/flows", answer{http.StatusOK, "settings-flagged.json"})
	_, body = get(t, newHandler(k), "/settings?flow=d18206fd-fef2-440c-85ab-18f90a880c41")
	if !strings.Contains(body, "You logged in with a temporary password") {
		t.Errorf("no forced-change notice:\n%s", body)
	}
	if p, q := strings.Index(body, "<h2>Change password</h2>"), strings.Index(body, "<h2>Profile</h2>"); p < 0 || q < 0 || p > q {
		t.Errorf("the password form is not first on a forced change:\n%s", body)
	}

	// Kratos's success flow still carries the identity as it was before
	// the settings hook cleared the flag: success must not repeat the notice.
	k.set("/self-service/settings/flows", answer{http.StatusOK, "settings-success.json"})
	_, body = get(t, newHandler(k), "/settings?flow=d18206fd-fef2-440c-85ab-18f90a880c41")
	if strings.Contains(body, "temporary password") || !strings.Contains(body, `<div class="msg success" data-id="1050001">Your changes have been saved!</div>`) {
		t.Errorf("success page:\n%s", body)
	}
}

func TestRecoverySentLinksInbox(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/self-service/recovery/flows": {http.StatusOK, "recovery-sent.json"}})
	_, body := get(t, newHandler(k), "/recovery?flow=f7648b70-8f5f-4d87-a8f0-57fb140ec8b6")
	for _, want := range []string{
		`id="check-inbox">Check your inbox (<a href="http://127.0.0.1:8025">open Mailpit</a>)`,
		"An email containing a recovery code has been sent",
		`<input type="text" name="code" required>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
}

func TestRegistrationRendersTraits(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/self-service/registration/flows": {http.StatusOK, "registration.json"}})
	_, body := get(t, newHandler(k), "/registration?flow=3ea33e3d-3f61-48e2-a1f8-20413be05b2c")
	for _, want := range []string{
		`<label>E-Mail`, `<input type="email" name="traits.email" required autocomplete="email">`,
		`<button type="submit" name="method" value="profile">Sign up</button>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
}

func TestUnusableFlowsRestart(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone} {
		k := newFakeKratos(t, map[string]answer{"/self-service/settings/flows": {status, ""}})
		resp, _ := get(t, newHandler(k), "/settings?flow=gone")
		if want := k.URL + "/self-service/settings/browser"; resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("Kratos HTTP %d: UI answered %d to %q, want 303 to %q", status, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
}

func TestKratosFailureIsAnErrorPage(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/self-service/login/flows": {http.StatusInternalServerError, ""}})
	resp, body := get(t, newHandler(k), "/login?flow=x")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Kratos did not answer as expected") {
		t.Errorf("HTTP %d\n%s", resp.StatusCode, body)
	}
}

func TestKratosCallsTimeOut(t *testing.T) {
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	t.Cleanup(stuck.Close)
	t.Cleanup(func() { close(release) })
	u := newUI(Config{KratosPublicURL: stuck.URL}, nil)
	u.timeout = 50 * time.Millisecond
	start := time.Now()
	resp, _ := get(t, u.routes(), "/login?flow=x")
	if resp.StatusCode != http.StatusBadGateway || time.Since(start) > 5*time.Second {
		t.Errorf("HTTP %d after %v, want 502 soon", resp.StatusCode, time.Since(start))
	}
}

func TestHomeLoggedOut(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/sessions/whoami": {http.StatusUnauthorized, ""}})
	resp, body := get(t, newHandler(k), "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	for _, want := range []string{`href="/login"`, `href="/registration"`, `href="/recovery"`, `<li><a href="http://127.0.0.1:8025">`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
	if got := k.cookie("/sessions/whoami"); got != browserCookie {
		t.Errorf("whoami got Cookie %q", got)
	}
}

func TestHomeLoggedIn(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{
		"/sessions/whoami":             {http.StatusOK, "whoami.json"},
		"/self-service/logout/browser": {http.StatusOK, "logout.json"},
	})
	_, body := get(t, newHandler(k), "/")
	for _, want := range []string{
		`<strong id="whoami">alice@example.com</strong>`,
		`<a id="logout" href="http://127.0.0.1:14433/self-service/logout?token=ory_lo_kanytnLdfHSKVkWiqeACEEqBmkguykVv">Log out</a>`,
		`<a href="/settings">Settings</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
	if got := k.cookie("/self-service/logout/browser"); got != browserCookie {
		t.Errorf("logout got Cookie %q: Kratos makes the logout URL for the session in it", got)
	}
}

func TestHomeSendsFlaggedUserToSettings(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/sessions/whoami": {http.StatusOK, "whoami-flagged.json"}})
	resp, _ := get(t, newHandler(k), "/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/settings" {
		t.Errorf("HTTP %d to %q, want 303 to /settings", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestErrorPage(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/self-service/errors": {http.StatusOK, "error.json"}})
	h := newHandler(k)
	resp, body := get(t, h, "/error?id=stub:500")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<strong>500 Internal Server Error</strong>: An internal server error occurred") ||
		!strings.Contains(body, "This is a stub error.") {
		t.Errorf("HTTP %d\n%s", resp.StatusCode, body)
	}
	if got := k.query("/self-service/errors").Get("id"); got != "stub:500" {
		t.Errorf("Kratos asked for error %q", got)
	}
	if got := k.cookie("/self-service/errors"); got != "" {
		t.Errorf("errors endpoint got Cookie %q; it needs none", got)
	}
	k.set("/self-service/errors", answer{http.StatusNotFound, ""})
	if resp, _ := get(t, h, "/error?id=unknown"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown error: HTTP %d, want 404", resp.StatusCode)
	}
	if resp, _ := get(t, h, "/error"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no id: HTTP %d, want 400", resp.StatusCode)
	}
}

func TestNoInboxLinkWithoutMailpit(t *testing.T) {
	k := newFakeKratos(t, map[string]answer{"/sessions/whoami": {http.StatusUnauthorized, ""}})
	_, body := get(t, New(Config{KratosPublicURL: k.URL}, nil), "/")
	if strings.Contains(body, "Mailpit") {
		t.Errorf("inbox linked without a Mailpit URL:\n%s", body)
	}
}
