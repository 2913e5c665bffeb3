// Package demoui serves the local stack's self-service pages (recovery,
// login, settings) on Kratos's browser flows, so a newcomer can click the
// whole temporary-password journey.
//
// It is a minimal server-rendered Kratos UI, without JavaScript: Kratos
// redirects the browser to /login?flow=ID (and likewise for registration,
// recovery, verification and settings); the UI fetches the flow from
// Kratos's public API with the browser's cookies and renders its nodes as
// HTML forms that post straight back to Kratos. The UI never sees what the
// user types. Kratos's cookies reach the UI because cookies are scoped to a
// host, not a port: the UI and Kratos must be served from the same host name
// (127.0.0.1 in the local stack).
package demoui

import (
	"bytes"
	"cmp"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config says where Kratos and Mailpit are, as the browser sees them.
type Config struct {
	// KratosPublicURL is Kratos's public API as the host reaches it.
	KratosPublicURL string
	// KratosBrowserURL is Kratos's public API as the browser reaches it
	// (e.g. http://127.0.0.1:4433 when the host reaches http://kratos:4433
	// in Docker); empty means KratosPublicURL.
	KratosBrowserURL string
	// MailpitURL, when set, is linked so the user finds the inbox.
	MailpitURL string
}

// kratosTimeout bounds each call to Kratos, so a stuck Kratos shows an
// error page instead of hanging the browser.
const kratosTimeout = 5 * time.Second

// flowNames are the self-service flows whose ui_url points at this UI.
func flowNames() []string {
	return []string{"login", "registration", "recovery", "verification", "settings"}
}

// ui holds what every handler needs; it is read-only once built.
type ui struct {
	kratos  string
	browser string
	mailpit string
	client  *http.Client
	timeout time.Duration
	log     *slog.Logger
	pages   *template.Template
}

// New returns the demo UI's handler.
func New(cfg Config, log *slog.Logger) http.Handler {
	return newUI(cfg, log).routes()
}

func newUI(cfg Config, log *slog.Logger) *ui {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ui{
		kratos:  strings.TrimRight(cfg.KratosPublicURL, "/"),
		browser: strings.TrimRight(cmp.Or(cfg.KratosBrowserURL, cfg.KratosPublicURL), "/"),
		mailpit: cfg.MailpitURL,
		client: &http.Client{
			// Kratos answers JSON requests without redirects; following one
			// would send the browser's cookies somewhere unexpected.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout: kratosTimeout,
		log:     log.With("component", "demoui"),
		pages:   template.Must(template.New("page").Parse(pageTemplate)),
	}
}

func (u *ui) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", u.home)
	for _, name := range flowNames() {
		mux.HandleFunc("GET /"+name, u.flowPage(name))
	}
	mux.HandleFunc("GET /error", u.errorPage)
	return securityHeaders(mux)
}

// securityHeaders keeps pages that carry CSRF tokens and session details
// out of caches and frames, and lets no script run: the UI has none.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// home shows who is logged in. A user who logged in with a temporary
// password is sent to the settings page, as a real application would do
// (or its reverse proxy, through the gateway's /gate).
func (u *ui) home(w http.ResponseWriter, r *http.Request) {
	cookie := r.Header.Get("Cookie")
	var s session
	err := u.getJSON(r.Context(), "/sessions/whoami", nil, cookie, &s)
	var se *statusError
	switch {
	// 401: no session; 403: a session that needs a second factor first,
	// which the login flow asks for.
	case errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden):
		u.render(w, http.StatusOK, page{Title: "Welcome", Home: &homeView{}})
		return
	case err != nil:
		u.fail(w, "whoami", err)
		return
	case s.Identity == nil:
		u.fail(w, "whoami", errors.New("kratos whoami: session without identity"))
		return
	}
	if s.Identity.mustChangePassword() {
		http.Redirect(w, r, "/settings", http.StatusSeeOther)
		return
	}
	view := &homeView{LoggedIn: true, Email: s.Identity.email()}
	var logout logoutFlow
	if err := u.getJSON(r.Context(), "/self-service/logout/browser", nil, cookie, &logout); err != nil {
		// The page is still useful without the link.
		u.log.Warn("no logout URL", "error", err.Error())
	} else {
		view.LogoutURL = logout.LogoutURL
	}
	u.render(w, http.StatusOK, page{Title: "Welcome", Home: view})
}

// flowPage renders one self-service flow, starting it first if the browser
// came without one.
func (u *ui) flowPage(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("flow")
		if id == "" {
			u.startFlow(w, r, name)
			return
		}
		var f flow
		err := u.getJSON(r.Context(), "/self-service/"+name+"/flows", url.Values{"id": {id}}, r.Header.Get("Cookie"), &f)
		var se *statusError
		if errors.As(err, &se) && restartable(se.Code) {
			u.log.Info("restarting flow", "flow", name, "status", se.Code)
			u.startFlow(w, r, name)
			return
		}
		if err != nil {
			u.fail(w, name, err)
			return
		}
		u.render(w, http.StatusOK, page{Title: flowTitle(name), Flow: newFlowView(name, &f)})
	}
}

// restartable reports the answers that mean the flow cannot be shown but a
// new one can: it expired (410), is unknown (404), belongs to other cookies
// (403, CSRF), or needs a session (401; Kratos then sends the browser to
// log in first).
func restartable(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

// startFlow sends the browser to Kratos, which sets the flow's CSRF cookie
// and redirects back here with ?flow=ID. return_to survives, so Kratos can
// send the user back where they came from afterwards.
func (u *ui) startFlow(w http.ResponseWriter, r *http.Request, name string) {
	target := u.browser + "/self-service/" + name + "/browser"
	if rt := r.URL.Query().Get("return_to"); rt != "" {
		target += "?" + url.Values{"return_to": {rt}}.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// errorPage shows an error Kratos sent the browser to /error?id= for.
func (u *ui) errorPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		u.render(w, http.StatusBadRequest, page{Title: "Error", Error: &errorView{Message: "No error to show: the link has no id."}})
		return
	}
	var fe flowError
	err := u.getJSON(r.Context(), "/self-service/errors", url.Values{"id": {id}}, "", &fe)
	var se *statusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		u.render(w, http.StatusNotFound, page{Title: "Error", Error: &errorView{Message: "This error is no longer known to Kratos."}})
		return
	}
	if err != nil {
		u.fail(w, "error", err)
		return
	}
	u.render(w, http.StatusOK, page{Title: "Error", Error: &errorView{
		Code:    fe.Error.Code,
		Status:  fe.Error.Status,
		Message: fe.Error.Message,
		Reason:  fe.Error.Reason,
	}})
}

// fail logs why Kratos could not be asked and tells the user without the
// details.
func (u *ui) fail(w http.ResponseWriter, what string, err error) {
	u.log.Error("kratos call failed", "page", what, "error", err.Error())
	u.render(w, http.StatusBadGateway, page{Title: "Error", Error: &errorView{
		Code:    http.StatusBadGateway,
		Status:  http.StatusText(http.StatusBadGateway),
		Message: "Kratos did not answer as expected. The gateway's log says why.",
	}})
}

// render executes the page into a buffer first, so a template error becomes
// a clean 500 instead of half a page.
func (u *ui) render(w http.ResponseWriter, status int, p page) {
	p.MailpitURL = u.mailpit
	var buf bytes.Buffer
	if err := u.pages.Execute(&buf, p); err != nil {
		u.log.Error("render page", "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}
