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

// gate is forward auth for a reverse proxy: it lets a request through only
// for a session whose password need not change. nginx's auth_request
// accepts 2xx, 401 and 403 only, so browsers get a 303 only when asked for
// HTML; the README shows how nginx turns the 403 into the redirect.
func (s *Server) gate(w http.ResponseWriter, r *http.Request) {
	cfg := s.config()
	ctx, cancel := context.WithTimeout(r.Context(), cfg.Timeouts.Kratos)
	defer cancel()
	sess, err := s.sessions.Session(ctx, r.Header.Get("Cookie"), sessionToken(r))
	switch {
	case errors.Is(err, kratospublic.ErrNoSession):
		writeError(w, http.StatusUnauthorized, "no valid session")
		return
	case err != nil:
		s.log.Error("gate: cannot check the session", "error", err.Error())
		writeError(w, http.StatusServiceUnavailable, "cannot check the session: Kratos is unavailable")
		return
	}
	if sess.MetadataPublic[recovery.KeyChangeRequired] == true {
		if wantsHTML(r) {
			http.Redirect(w, r, cfg.Kratos.SettingsUIURL, http.StatusSeeOther)
			return
		}
		writeJSON(w, http.StatusForbidden, map[string]string{
			"error":       "password_change_required",
			"message":     "choose a new password before you continue",
			"redirect_to": cfg.Kratos.SettingsUIURL,
		})
		return
	}
	w.Header().Set(HeaderIdentityID, sess.IdentityID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "allowed"})
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

func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}
