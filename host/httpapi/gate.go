package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratospublic"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
)

// Sessions resolves the caller's Kratos session.
type Sessions interface {
	Session(ctx context.Context, cookie, token string) (*kratospublic.Session, error)
}

// HeaderIdentityID carries the identity id of an allowed session to the
// upstream, as Oathkeeper and the Kratos docs' forward-auth examples do.
const HeaderIdentityID = "X-Identity-Id"

// HeaderGateRedirect is set on the gate's 401 and 403 when the request asks
// for HTML (a browser): the page the proxy should send the browser to, the
// login UI or the settings UI. nginx reads it with auth_request_set and
// redirects in its error_page; an API client's answer never carries it.
const HeaderGateRedirect = "X-Gate-Redirect"

// Gate answers, by session and caller.
const (
	gateNoSession      = "no_session"
	gateChangeRequired = "password_change_required"
)

// gate is forward auth for a reverse proxy: it lets a request through only
// for a session whose password need not change.
//
// It answers 200, 401 or 403 (and 503 when Kratos cannot be asked), because
// nginx's auth_request accepts nothing else: a 3xx there is a 500 for the
// user. A browser's 401 or 403 names the login or settings UI in
// X-Gate-Redirect, which the proxy turns into the redirect. A proxy that
// passes the forward-auth answer to the client as it is (Traefik's
// ForwardAuth) asks for /gate?browser=redirect: browsers then get a 303 to
// that page instead.
func (s *Server) gate(w http.ResponseWriter, r *http.Request) {
	cfg := s.config()
	// Every answer depends on the caller's session and Accept header.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "Accept, Cookie, Authorization, X-Session-Token")
	redirect := false
	switch mode := r.URL.Query()["browser"]; {
	case len(mode) == 0:
	case len(mode) == 1 && mode[0] == "redirect":
		redirect = true
	default:
		// A proxy misconfigured this way should fail at its first request,
		// not hand browsers JSON in production.
		writeError(w, http.StatusBadRequest, `the query parameter "browser" takes one value, "redirect" (303 for browsers, for Traefik's ForwardAuth); leave it out for nginx's auth_request`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), cfg.Timeouts.Kratos)
	defer cancel()
	sess, err := s.sessions.Session(ctx, r.Header.Get("Cookie"), sessionToken(r))
	switch {
	case errors.Is(err, kratospublic.ErrNoSession):
		denyAtGate(w, r, redirect, http.StatusUnauthorized, gateNoSession, "log in first", cfg.Kratos.LoginUIURL)
		return
	case err != nil:
		s.log.Error("gate: cannot check the session", "error", err.Error())
		writeError(w, http.StatusServiceUnavailable, "cannot check the session: Kratos is unavailable")
		return
	}
	if sess.MetadataPublic[recovery.KeyChangeRequired] == true {
		denyAtGate(w, r, redirect, http.StatusForbidden, gateChangeRequired, "choose a new password before you continue", cfg.Kratos.SettingsUIURL)
		return
	}
	w.Header().Set(HeaderIdentityID, sess.IdentityID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "allowed"})
}

// denyAtGate answers a request the gate refuses: to a browser a 303 to page
// when the proxy asked for redirects, else status with page in
// X-Gate-Redirect; to an API client status with JSON only.
func denyAtGate(w http.ResponseWriter, r *http.Request, redirect bool, status int, code, msg, page string) {
	if wantsHTML(r) {
		if redirect {
			http.Redirect(w, r, page, http.StatusSeeOther)
			return
		}
		w.Header().Set(HeaderGateRedirect, page)
	}
	writeJSON(w, status, map[string]string{"error": code, "message": msg, "redirect_to": page})
}

// sessionToken accepts Kratos's X-Session-Token or "Authorization: Bearer".
func sessionToken(r *http.Request) string {
	if t := r.Header.Get("X-Session-Token"); t != "" {
		return t
	}
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return auth[7:]
	}
	return ""
}

// wantsHTML tells a browser's navigation (Accept: text/html, …) from an API
// client or a script's fetch (application/json, */*, none).
func wantsHTML(r *http.Request) bool {
	return strings.Contains(strings.ToLower(r.Header.Get("Accept")), "text/html")
}
