package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
)

// loginHook refuses a login while the identity's temporary password has
// expired. Kratos calls it after a password login with can_interrupt, so any
// non-2xx answer blocks the login: a body the gateway cannot read is logged
// and let through, because failing closed there would block every login of
// every user. It fails closed only for an identity it knows to carry an
// expired temporary password.
func (s *Server) loginHook(w http.ResponseWriter, r *http.Request) {
	var body hookBody
	if status, err := readJSON(w, r, &body); err != nil {
		s.log.Error("login hook: unreadable body; login allowed", "error", err.Error(), "status_if_strict", status)
		writeJSON(w, http.StatusOK, map[string]string{"status": "allowed", "warning": err.Error()})
		return
	}
	if body.Identity == nil || body.Identity.ID == "" {
		s.log.Error("login hook: body has no identity; login allowed. Pass ctx.identity in the hook body (configs/kratos/identity-hook.jsonnet)")
		writeJSON(w, http.StatusOK, map[string]string{"status": "allowed", "warning": "body has no identity"})
		return
	}
	meta, err := metadataObject(body.Identity.MetadataPublic)
	if err != nil {
		s.log.Error("login hook: unreadable metadata_public; login allowed", "identity_id", body.Identity.ID, "error", err.Error())
		writeJSON(w, http.StatusOK, map[string]string{"status": "allowed"})
		return
	}
	if meta[recovery.KeyChangeRequired] != true {
		writeJSON(w, http.StatusOK, map[string]string{"status": "allowed"})
		return
	}
	expiresAt, err := time.Parse(time.RFC3339, asString(meta[recovery.KeyExpiresAt]))
	if err != nil {
		s.log.Error("login hook: temporary password without a readable expiry; login allowed",
			"identity_id", body.Identity.ID, "key", "metadata_public."+recovery.KeyExpiresAt)
		writeJSON(w, http.StatusOK, map[string]string{"status": "allowed"})
		return
	}
	if !s.now().Before(expiresAt) {
		s.log.Warn("login refused: temporary password expired", "event", "login_refused", "identity_id", body.Identity.ID,
			"expired_at", expiresAt.Format(time.RFC3339))
		writeJSON(w, http.StatusForbidden, newHookError(textExpired))
		return
	}
	s.log.Info("login with a temporary password; a new password is required", "identity_id", body.Identity.ID,
		"expires_at", expiresAt.Format(time.RFC3339))
	writeJSON(w, http.StatusOK, map[string]string{"status": "allowed", "password_change_required": "true"})
}

// settingsHook runs before Kratos persists a new password (settings after
// password web hook with response.parse): the answer's metadata_public,
// without the change-required keys, and metadata_admin, without a pending
// reset, are written in the same identity write as the password.
func (s *Server) settingsHook(w http.ResponseWriter, r *http.Request) {
	var body hookBody
	if status, err := readJSON(w, r, &body); err != nil {
		s.log.Warn("settings hook refused", "error", err.Error(), "status", status)
		writeError(w, status, err.Error())
		return
	}
	if body.Identity == nil || body.Identity.ID == "" {
		writeError(w, http.StatusBadRequest, "body has no identity: pass ctx.identity (configs/kratos/identity-hook.jsonnet)")
		return
	}
	if body.Identity.MetadataPublic == nil {
		writeError(w, http.StatusBadRequest, "identity.metadata_public is missing: pass the whole ctx.identity, or other metadata would be lost")
		return
	}
	meta, err := metadataObject(body.Identity.MetadataPublic)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var reply settingsIdentity
	// A failure here must not stop the user from choosing a password: a
	// pending reset left behind is never reused once Kratos stores the new
	// hash, so the hook only logs it.
	if admin, err := s.reset.PasswordChanged(r.Context(), body.Identity.ID, s.policy(s.config(), recovery.User)); err != nil {
		s.log.Warn("settings hook: cannot clear a pending reset; the password change goes on", "identity_id", body.Identity.ID, "error", err.Error())
	} else {
		reply.MetadataAdmin = admin
	}
	_, flagged := meta[recovery.KeyChangeRequired]
	_, expiring := meta[recovery.KeyExpiresAt]
	if flagged || expiring {
		delete(meta, recovery.KeyChangeRequired)
		delete(meta, recovery.KeyExpiresAt)
		if reply.MetadataPublic, err = json.Marshal(meta); err != nil {
			writeError(w, http.StatusInternalServerError, "encode metadata_public")
			return
		}
		s.log.Info("new password set; change-required flag cleared", "event", "password_changed", "identity_id", body.Identity.ID)
	}
	if reply.MetadataPublic == nil && reply.MetadataAdmin == nil {
		writeJSON(w, http.StatusOK, settingsReply{})
		return
	}
	writeJSON(w, http.StatusOK, settingsReply{Identity: &reply})
}

// metadataObject reads Kratos's metadata_public, which is null or an object.
func metadataObject(raw json.RawMessage) (map[string]any, error) {
	meta := map[string]any{}
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return meta, nil
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, errBadMetadata
	}
	return meta, nil
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

// passwordHook answers Kratos's password migration hook
// (selfservice/hook/password_migration_hook.go): 200 {"status":"password_match"}
// lets the login through and makes Kratos store the password's hash; 403
// means invalid credentials. It answers password_match only when
// CheckPassword says so, never on an error path.
func (s *Server) passwordHook(w http.ResponseWriter, r *http.Request) {
	var body migrationRequest
	if status, err := readJSON(w, r, &body); err != nil {
		s.log.Warn("password hook refused", "error", err.Error(), "status", status)
		writeError(w, status, err.Error())
		return
	}
	if body.Identifier == nil || body.Password == nil {
		writeError(w, http.StatusBadRequest, "body must be {\"identifier\": string, \"password\": string}")
		return
	}
	verdict, err := s.reset.CheckPassword(r.Context(), *body.Identifier, *body.Password, s.policy(s.config(), recovery.User))
	if err != nil {
		s.log.Error("password hook: cannot check the password; login refused", "error", err.Error())
		s.observe.PasswordHook("error")
		writeError(w, http.StatusServiceUnavailable, "cannot check the password now")
		return
	}
	s.observe.PasswordHook(string(verdict))
	if verdict != recovery.MatchTemporary && verdict != recovery.MatchCurrent {
		writeError(w, http.StatusForbidden, "invalid credentials")
		return
	}
	writeJSON(w, http.StatusOK, migrationReply{Status: "password_match"})
}
