package httpapi

import (
	"net/http"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
)

// AdminHandler routes the admin API, served on admin.listen with its own
// key: an admin console resets a user's password the way `gateway reset`
// does (replaced at once, sessions ended, mailed).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /admin/identities/{id}/reset", s.adminAuthenticated(http.HandlerFunc(s.adminReset)))
	return mux
}

func (s *Server) adminAuthenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearerMatches(r, s.config().Admin.APIKey) {
			s.log.Warn("admin request refused: missing or wrong admin API key", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "missing or wrong admin API key: send \"Authorization: Bearer <admin.api_key>\"")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminReset answers 200 with the outcome, 409 inside password.cooldown,
// and the courier's statuses for failures.
func (s *Server) adminReset(w http.ResponseWriter, r *http.Request) {
	cfg := s.config()
	var body struct {
		// Recipient picks one of the identity's recovery addresses; empty
		// takes the first.
		Recipient string `json:"recipient"`
	}
	if r.ContentLength != 0 {
		if status, err := readJSON(w, r, &body); err != nil {
			writeError(w, status, err.Error())
			return
		}
	}
	id := r.PathValue("id")
	res, err := s.reset.Reset(r.Context(), recovery.Request{IdentityID: id, Recipient: body.Recipient, Trigger: "admin-api"}, s.policy(cfg, recovery.Admin))
	if err != nil {
		status := statusOf(err)
		s.observe.Reset("admin-api", string(recovery.OutcomeFailed), "")
		writeError(w, status, err.Error())
		return
	}
	s.observe.Reset("admin-api", string(res.Outcome), res.Reason)
	status := http.StatusOK
	if res.Outcome == recovery.OutcomeCooldown {
		status = http.StatusConflict
	}
	answer := map[string]string{"identity_id": id, "outcome": string(res.Outcome)}
	if res.Reason != "" {
		answer["reason"] = res.Reason
	}
	writeJSON(w, status, answer)
}
