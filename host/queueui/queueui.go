// Package queueui puts River's UI of the durable outbox behind the admin
// API's key: every path under the prefix answers only a request with
// "Authorization: Bearer <admin.api_key>" or the session cookie its login
// form sets once given the key.
//
// River's UI has no authentication of its own and can retry, cancel and
// delete jobs and pause queues, so nothing under the prefix but the login
// form answers without the key. The cookie holds an expiry and an HMAC of
// it under the key, never the key: it is HttpOnly, SameSite=Strict, Secure
// on a TLS listener, scoped to the prefix, and ends after SessionTTL or
// when admin.api_key changes. Cross-origin requests that change something
// are refused (net/http's CrossOriginProtection), and every change through
// the UI writes an audit line.
package queueui

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Prefix is where serve mounts the UI on the admin listener.
const Prefix = "/admin/queue/"

// SessionTTL is how long a login lasts.
const SessionTTL = 12 * time.Hour

// cookieName is the session cookie's name.
const cookieName = "gateway_queue_session"

// macLabel binds a session's MAC to this use of admin.api_key.
const macLabel = "kratos-email-gateway queue ui session v1\x00"

// Options configure New.
type Options struct {
	// Prefix is where the UI is served, with a trailing slash; empty is
	// Prefix.
	Prefix string
	// Key returns admin.api_key in effect (it follows reloads); while it
	// is empty nothing is let through.
	Key func() string
	Log *slog.Logger
	// Now is the clock of the sessions; nil is time.Now.
	Now func() time.Time
}

type gate struct {
	ui     http.Handler
	prefix string
	key    func() string
	log    *slog.Logger
	now    func() time.Time
}

// New serves ui (River's UI, made for opts.Prefix) behind admin.api_key,
// with the login form at <prefix>login and the logout at <prefix>logout.
func New(ui http.Handler, opts Options) http.Handler {
	g := &gate{ui: ui, prefix: opts.Prefix, key: opts.Key, log: opts.Log, now: opts.Now}
	if g.prefix == "" {
		g.prefix = Prefix
	}
	if g.now == nil {
		g.now = time.Now
	}
	return http.NewCrossOriginProtection().Handler(g)
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The UI's buttons change jobs: no page of it in another site's frame.
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	switch r.URL.Path {
	case g.prefix + "login":
		g.login(w, r)
		return
	case g.prefix + "logout":
		g.logout(w, r)
		return
	}
	how := g.authenticated(r)
	if how == "" {
		g.refuse(w, r)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
		g.ui.ServeHTTP(w, r)
		return
	}
	g.audited(w, r, how)
}

// authenticated says how r proved the key: "bearer", "session", or "" for
// not at all.
func (g *gate) authenticated(r *http.Request) string {
	key := g.key()
	if key == "" {
		return ""
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		if equal(auth, "Bearer "+key) {
			return "bearer"
		}
		return ""
	}
	if c, err := r.Cookie(cookieName); err == nil && g.validSession(key, c.Value) {
		return "session"
	}
	return ""
}

// equal compares in constant time, lengths included.
func equal(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// session is a cookie's value: the expiry, and its MAC under the key.
func session(key string, expires int64) string {
	exp := strconv.FormatInt(expires, 10)
	return exp + "." + base64.RawURLEncoding.EncodeToString(sessionMAC(key, exp))
}

func sessionMAC(key, exp string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(macLabel + exp))
	return m.Sum(nil)
}

func (g *gate) validSession(key, value string) bool {
	exp, mac, ok := strings.Cut(value, ".")
	if !ok {
		return false
	}
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || g.now().Unix() >= expires {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(mac)
	return err == nil && hmac.Equal(got, sessionMAC(key, exp))
}

// refuse answers 401: the login form to a browser, JSON to anything else.
func (g *gate) refuse(w http.ResponseWriter, r *http.Request) {
	// No key at all, or a session that expired (an open tab polls on), is
	// routine; a wrong key or a forged session is not.
	level := slog.LevelDebug
	if c, err := r.Cookie(cookieName); r.Header.Get("Authorization") != "" || err == nil && g.forged(c.Value) {
		level = slog.LevelWarn
	}
	g.log.Log(r.Context(), level, "queue UI request refused: missing or wrong admin API key", "path", r.URL.Path, "remote", r.RemoteAddr)
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html") {
		g.page(w, http.StatusUnauthorized, r.URL.RequestURI(), "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "missing or wrong admin API key: send \"Authorization: Bearer <admin.api_key>\", or log in at " + g.prefix + "login"})
}

// forged: the session's MAC does not match its expiry under the key.
func (g *gate) forged(value string) bool {
	exp, mac, _ := strings.Cut(value, ".")
	got, err := base64.RawURLEncoding.DecodeString(mac)
	return err != nil || !hmac.Equal(got, sessionMAC(g.key(), exp))
}

// login shows the form (GET) and takes the key (POST): the right one sets
// the session cookie and goes back to the page asked for.
func (g *gate) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		g.page(w, http.StatusOK, r.URL.Query().Get("next"), "")
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form does not parse", http.StatusBadRequest)
		return
	}
	next := r.PostForm.Get("next")
	key := g.key()
	if key == "" || !equal(r.PostForm.Get("key"), key) {
		g.log.Warn("queue UI login refused: wrong admin API key", "remote", r.RemoteAddr)
		g.page(w, http.StatusUnauthorized, next, "That is not the admin API key.")
		return
	}
	expires := g.now().Add(SessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    session(key, expires.Unix()),
		Path:     g.prefix,
		MaxAge:   int(SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	g.log.Info("queue UI login", "audit", true, "event", "queue_ui_login", "remote", r.RemoteAddr)
	http.Redirect(w, r, g.next(next), http.StatusSeeOther)
}

// next is where a login goes: the page asked for when it is under the
// prefix (never another site), else the UI's start.
func (g *gate) next(next string) string {
	if !strings.HasPrefix(next, g.prefix) || strings.HasPrefix(next, g.prefix+"login") || strings.ContainsAny(next, "\\\r\n") {
		return g.prefix
	}
	return next
}

// logout ends the browser's session.
func (g *gate) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: g.prefix, MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, g.prefix+"login", http.StatusSeeOther)
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Queue: log in</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem; color: #1e293b; }
input[type=password] { width: 100%; padding: .5rem; margin: .5rem 0 1rem; box-sizing: border-box; }
button { padding: .5rem 1rem; }
.problem { color: #b91c1c; }
</style>
</head>
<body>
<h1>kratos-email-gateway: the queue</h1>
<p>River's view of the durable outbox. Give the admin API key (<code>admin.api_key</code>) to continue;
the session lasts {{.TTL}}.</p>
{{if .Problem}}<p class="problem">{{.Problem}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="next" value="{{.Next}}">
<label for="key">Admin API key</label>
<input type="password" id="key" name="key" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
</form>
</body>
</html>
`))

// page writes the login form with status.
func (g *gate) page(w http.ResponseWriter, status int, next, problem string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, map[string]string{
		"Action": g.prefix + "login", "Next": g.next(next), "Problem": problem, "TTL": SessionTTL.String(),
	})
}

// audited serves a request that changes something (retry, cancel, delete,
// pause, resume, update) and writes its audit line.
func (g *gate) audited(w http.ResponseWriter, r *http.Request, how string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "request body over 1 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req struct {
		IDs []json.RawMessage `json:"ids"`
	}
	_ = json.Unmarshal(body, &req)
	ids := make([]string, 0, len(req.IDs))
	for _, id := range req.IDs {
		ids = append(ids, strings.Trim(string(id), `"`))
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	g.ui.ServeHTTP(rec, r)
	g.log.Info("queue UI action", "audit", true, "event", "queue_ui_action", "method", r.Method,
		"path", strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(g.prefix, "/")), "job_ids", ids,
		"auth", how, "status", rec.status, "remote", r.RemoteAddr)
}

// statusRecorder keeps the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
