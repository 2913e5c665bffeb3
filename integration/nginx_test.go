package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// nginxBin is Debian's nginx package, which scripts/deps.sh installs.
const nginxBin = "/usr/sbin/nginx"

// The README's recipes put /gate in front of an application; these are the
// addresses they are written with, which the tests swap for the stack's.
const (
	readmeGateway  = "http://127.0.0.1:8080"
	readmeUpstream = "proxy_pass http://app;"
	loginUI        = "http://127.0.0.1:4455/login"
	settingsUI     = "http://127.0.0.1:4455/settings"
	browserAccept  = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
)

// The README's nginx recipe, run by a real nginx in front of the stack: a
// browser is sent to the login UI without a session and to the settings UI
// while its password must change, an API client gets the 401 and 403 as
// JSON, and nobody ever gets nginx's 500 ("auth request unexpected
// status"); once the password changed, the application gets the request
// with the identity's X-Identity-Id. The README's Traefik address is asked
// the way Traefik's ForwardAuth asks it, at every step.
func TestNginxRecipe(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	app := startEchoApp(t)
	proxy := startNginx(t, nginxRecipe(t), app.addr)
	traefik := traefikAddress(t)

	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)

	type want struct {
		status   int
		location string // a 303's Location
		error    string // a 401's or 403's JSON "error"
		identity string // the X-Identity-Id the application got
	}
	// check asks nginx, then the Traefik address, with one caller's headers.
	check := func(step, who string, h http.Header, w want) {
		t.Helper()
		// A client's own X-Identity-Id must never reach the application.
		h = h.Clone()
		h.Set("X-Identity-Id", "spoofed-by-the-client")
		before := app.requests()
		status, hdr, body := get(t, proxy.url+"/app/page?x=1", h)
		got := want{status: status, location: hdr.Get("Location")}
		if status == http.StatusUnauthorized || status == http.StatusForbidden {
			got.error = jsonError(t, hdr, body)
		}
		if app.requests() > before {
			got.identity = app.lastIdentity()
		}
		if got != w {
			t.Errorf("%s, %s through nginx: got %+v, want %+v\nbody: %s\nnginx's errors:\n%s", step, who, got, w, body, proxy.problems())
		}

		// Traefik passes a non-2xx answer to the client as it is and, on a
		// 2xx, copies authResponseHeaders onto the upstream request.
		status, hdr, body = get(t, traefik, h)
		got = want{status: status, location: hdr.Get("Location")}
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			got.error = jsonError(t, hdr, body)
		case status/100 == 2:
			got.identity = hdr.Get("X-Identity-Id")
		}
		if got != w {
			t.Errorf("%s, %s through the README's Traefik address: got %+v, want %+v\nbody: %s", step, who, got, w, body)
		}
	}
	browser := func(cookie string) http.Header {
		h := http.Header{"Accept": {browserAccept}}
		if cookie != "" {
			h.Set("Cookie", cookie)
		}
		return h
	}
	api := func(token string) http.Header {
		h := http.Header{"Accept": {"application/json"}}
		if token != "" {
			h.Set("X-Session-Token", token)
		}
		return h
	}
	bearer := func(token string) http.Header {
		return http.Header{"Authorization": {"Bearer " + token}}
	}

	toLogin := want{status: http.StatusSeeOther, location: loginUI}
	noSession := want{status: http.StatusUnauthorized, error: "no_session"}
	check("no session", "browser", browser(""), toLogin)
	check("no session", "browser with a stale cookie", browser("ory_kratos_session=stale"), toLogin)
	check("no session", "API client", api(""), noSession)
	check("no session", "API client with a stale token", api("ory_st_stale"), noSession)
	check("no session", "script's fetch (Accept: */*)", http.Header{"Accept": {"*/*"}}, noSession)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	// The first login with the temporary password (the browser's) sets the
	// flag and ends other sessions; the API login after it keeps both.
	cookie := browserLogin(t, email, temp)
	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("API login with the temporary password: HTTP %d", status)
	}

	toSettings := want{status: http.StatusSeeOther, location: settingsUI}
	mustChange := want{status: http.StatusForbidden, error: "password_change_required"}
	check("must change", "browser", browser(cookie), toSettings)
	check("must change", "API client", api(s.Token), mustChange)
	check("must change", "API client with Authorization: Bearer", bearer(s.Token), mustChange)
	check("must change", "browser session asking for JSON", http.Header{"Cookie": {cookie}, "Accept": {"application/json"}}, mustChange)

	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow: HTTP %d\n%s", status, body)
	}
	allowed := want{status: http.StatusOK, identity: id.ID}
	check("changed", "browser", browser(cookie), allowed)
	check("changed", "API client", api(s.Token), allowed)
	check("changed", "API client with Authorization: Bearer", bearer(s.Token), allowed)
	check("changed", "browser logged in afresh", browser(browserLogin(t, email, newPassword)), allowed)

	if log := proxy.problems(); log != "" {
		t.Errorf("nginx logged problems (\"auth request unexpected status\" is a gate answer turned into a 500):\n%s", log)
	}
}

// nginxRecipe is the README's nginx snippet (the first in "Forcing the
// change in front of your apps"), pointed at the stack's gateway.
func nginxRecipe(t *testing.T) string {
	t.Helper()
	recipe := readmeBlock(t, "Forcing the change in front of your apps", "nginx")
	if n := strings.Count(recipe, readmeGateway+"/gate;"); n != 1 {
		t.Fatalf("the README's nginx snippet names %s/gate %d times, want once (the test swaps it for the stack's gateway):\n%s", readmeGateway, n, recipe)
	}
	if !strings.Contains(recipe, readmeUpstream) {
		t.Fatalf("the README's nginx snippet lacks %q (the test defines that upstream):\n%s", readmeUpstream, recipe)
	}
	return strings.Replace(recipe, readmeGateway+"/gate;", "http://"+env.hostAddr+"/gate;", 1)
}

// traefikAddress is the ForwardAuth address of the README's Traefik
// snippet, pointed at the stack's gateway.
func traefikAddress(t *testing.T) string {
	t.Helper()
	raw := readmeBlock(t, "Forcing the change in front of your apps", "yaml")
	var doc struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth struct {
					Address             string   `yaml:"address"`
					AuthResponseHeaders []string `yaml:"authResponseHeaders"`
				} `yaml:"forwardAuth"`
			} `yaml:"middlewares"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("the README's Traefik snippet: %v\n%s", err, raw)
	}
	fa := doc.HTTP.Middlewares["kratos-gate"].ForwardAuth
	if !strings.HasPrefix(fa.Address, readmeGateway+"/gate") || len(fa.AuthResponseHeaders) != 1 || fa.AuthResponseHeaders[0] != "X-Identity-Id" {
		t.Fatalf("the README's Traefik snippet: address %q, authResponseHeaders %v; want %s/gate… and [X-Identity-Id]", fa.Address, fa.AuthResponseHeaders, readmeGateway)
	}
	return "http://" + env.hostAddr + strings.TrimPrefix(fa.Address, readmeGateway)
}

// readmeBlock is the first fenced block of a language in a README section.
func readmeBlock(t *testing.T, section, lang string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(env.root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, text, ok := strings.Cut(string(raw), "\n## "+section+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", section)
	}
	text, _, _ = strings.Cut(text, "\n## ")
	_, block, ok := strings.Cut(text, "\n```"+lang+"\n")
	if !ok {
		t.Fatalf("README.md's section %q has no ```%s block", section, lang)
	}
	block, _, ok = strings.Cut(block, "\n```\n")
	if !ok {
		t.Fatalf("README.md's section %q: the ```%s block does not end", section, lang)
	}
	return block + "\n"
}

// get sends one request as a client of the proxy would, without following
// redirects, and returns the answer.
func get(t *testing.T, url string, h http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	observed.output(string(body))
	return resp.StatusCode, resp.Header, body
}

// jsonError is the "error" of a JSON answer, or a description of what the
// answer was instead.
func jsonError(t *testing.T, h http.Header, body []byte) string {
	t.Helper()
	var v struct {
		Error string `json:"error"`
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		return fmt.Sprintf("(Content-Type %q)", ct)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Sprintf("(not JSON: %v)", err)
	}
	return v.Error
}

// browserLogin runs Kratos's browser login flow with a password, as a
// browser's JavaScript would (JSON, with the CSRF cookie and token), and
// returns the Cookie header that carries the session.
func browserLogin(t *testing.T, identifier, password string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.kratosPublic+"/self-service/login/browser", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("create browser login flow: %v", err)
	}
	var flow struct {
		ID string `json:"id"`
		UI struct {
			Nodes []struct {
				Attributes struct {
					Name  string `json:"name"`
					Value any    `json:"value"`
				} `json:"attributes"`
			} `json:"nodes"`
		} `json:"ui"`
	}
	err = json.NewDecoder(resp.Body).Decode(&flow)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("create browser login flow: HTTP %d, %v", resp.StatusCode, err)
	}
	csrf := ""
	for _, n := range flow.UI.Nodes {
		if n.Attributes.Name == "csrf_token" {
			csrf, _ = n.Attributes.Value.(string)
		}
	}
	cookies := resp.Cookies()
	body, _ := json.Marshal(map[string]string{"method": "password", "identifier": identifier, "password": password, "csrf_token": csrf})
	req, _ = http.NewRequest(http.MethodPost, env.kratosPublic+"/self-service/login?flow="+flow.ID, bytes.NewReader(body))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatalf("submit browser login flow: %v", err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	observed.output(string(raw))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("submit browser login flow: HTTP %d\n%s", resp.StatusCode, raw)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "ory_kratos_session" && c.Value != "" {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("browser login: no ory_kratos_session cookie in %v", resp.Header["Set-Cookie"])
	return ""
}

// echoApp is the application behind the proxy: it answers every request
// with the X-Identity-Id it got.
type echoApp struct {
	addr string
	mu   sync.Mutex
	n    int
	last string
}

func startEchoApp(t *testing.T) *echoApp {
	t.Helper()
	a := &echoApp{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.n++
		a.last = strings.Join(r.Header.Values("X-Identity-Id"), ",")
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"app": "echo", "x_identity_id": a.last, "path": r.URL.RequestURI()})
	}))
	t.Cleanup(srv.Close)
	a.addr = srv.Listener.Addr().String()
	return a
}

func (a *echoApp) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func (a *echoApp) lastIdentity() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// nginxProc is an nginx the test runs as its own process.
type nginxProc struct {
	url, dir string
}

func (p nginxProc) errorLog() string {
	raw, _ := os.ReadFile(filepath.Join(p.dir, "error.log"))
	return tail(raw)
}

// problems is what nginx logged at level warn or above.
func (p nginxProc) problems() string {
	raw, _ := os.ReadFile(filepath.Join(p.dir, "error.log"))
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.Contains(line, "[notice]") && !strings.Contains(line, "[info]") && !strings.Contains(line, "[debug]") && line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// startNginx runs Debian's nginx in the foreground with a config of its own
// (everything it writes in a temporary folder, a free loopback port): the
// locations of recipe in a server in front of the upstream "app" at
// appAddr. It stops nginx when the test ends and keeps its logs in
// .artifacts. A missing nginx fails the test: scripts/deps.sh installs it
// on every machine the tests run on, and a skipped recipe test would pass
// unnoticed.
func startNginx(t *testing.T, recipe, appAddr string) nginxProc {
	t.Helper()
	if !isExecutable(nginxBin) {
		t.Fatalf("nginx is not installed at %s: run scripts/deps.sh nginx (or scripts/deps.sh, which installs every dependency of the tests)", nginxBin)
	}
	dir := t.TempDir()
	port := freePort()
	user := ""
	if os.Geteuid() == 0 {
		// As root, nginx's workers would run as nobody, who cannot enter
		// the test's temporary folder.
		user = "user root;"
	}
	conf := fmt.Sprintf(`# written by integration/nginx_test.go
daemon off;
%[1]s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    upstream app { server %[3]s; }
    server {
        listen 127.0.0.1:%[4]d;
        server_name localhost;
# --- README.md, "Forcing the change in front of your apps" ---
%[5]s# --- end of README.md ---
    }
}
`, user, dir, appAddr, port, recipe)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log")}
	if out, err := exec.Command(nginxBin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t rejects the config: %v\n%s\n%s", err, out, conf)
	}
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginxBin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p := nginxProc{url: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir}
	t.Cleanup(func() {
		// SIGQUIT: the master ends its workers gracefully, then itself.
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		out.Close()
		saveNginxLogs(t, dir)
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-done:
			t.Fatalf("nginx exited at start:\n%s", p.errorLog())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %d: %v\n%s", port, err, p.errorLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// saveNginxLogs copies nginx's config and logs to .artifacts.
func saveNginxLogs(t *testing.T, dir string) {
	prefix := filepath.Join(env.logDir, "nginx-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	// Made here rather than once: another run of the suite starts by
	// emptying .artifacts.
	if err := os.MkdirAll(env.logDir, 0o755); err != nil {
		return
	}
	for _, name := range []string{"nginx.conf", "error.log", "access.log", "nginx.out"} {
		if raw, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			_ = os.WriteFile(prefix+name, raw, 0o644)
		}
	}
}
