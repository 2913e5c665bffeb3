package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/pwhash"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
)

// Verdict is the answer to Kratos's password migration hook.
type Verdict string

const (
	// NoMatch: Kratos refuses the login (invalid credentials).
	NoMatch Verdict = "no_match"
	// MatchTemporary: the fresh temporary password was used; a new password
	// is now required and the identity's other sessions have ended.
	MatchTemporary Verdict = "temporary"
	// MatchCurrent: the user logged in with the password they had; the
	// pending reset is void.
	MatchCurrent Verdict = "current"
)

// CheckPassword settles a pending reset at login: Kratos calls it through
// the migration hook while the identity's credential points there, and
// stores the hash of whichever password matched. Only the two Match
// verdicts let the user in; every error comes with NoMatch.
func (s *Service) CheckPassword(ctx context.Context, identifier, password string, pol Policy) (Verdict, error) {
	id, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (*kratosadmin.Identity, error) {
		return s.ids.FindByIdentifier(ctx, identifier)
	})
	if errors.Is(err, kratosadmin.ErrNotFound) {
		// As long as a real check, so identifiers cannot be enumerated.
		pwhash.Dummy(password)
		return refused(s.log, password, "unknown_identifier")
	}
	if err != nil {
		return NoMatch, fmt.Errorf("look up identity: %w", err)
	}
	unlock, _ := s.lock(ctx, id.ID, pol.KratosTimeout, true)
	defer unlock()
	log := s.log.With("identity_id", id.ID)

	p, ok := readPending(id.MetadataAdmin)
	keys := pol.Keys
	if !ok || keys == nil {
		pwhash.Dummy(password)
		log.Warn("password migration hook called for an identity without a pending reset of the gateway; refused")
		return refused(log, password, "no_pending_reset")
	}
	now := s.now()

	why, whyAttrs := "wrong_password", []any(nil)
	if ok, err := keys.Verify(p.TempMAC, password, id.ID); err != nil {
		log.Warn("the temporary password's hash cannot be checked with the configured secrets.cipher keys", "error", err.Error())
	} else if ok && now.Before(p.ExpiresAt) {
		return s.settleTemporary(ctx, pol, id, p)
	} else if ok {
		why, whyAttrs = "temporary_password_expired", []any{"expired_at", p.ExpiresAt.Format(time.RFC3339)}
	}

	if p.SealedHash == "" {
		// The identity had no password when the reset was asked for: only
		// the temporary password logs in.
		pwhash.Dummy(password)
		return refused(log, password, why, whyAttrs...)
	}
	current, err := keys.Open(p.SealedHash, id.ID)
	if err != nil {
		if errors.Is(err, sealing.ErrNoKey) || errors.Is(err, sealing.ErrFormat) {
			log.Error("no secrets.cipher key opens the sealed current password; only the temporary password works", "error", err.Error())
			return refused(log, password, why, whyAttrs...)
		}
		return NoMatch, err
	}
	match, err := pwhash.Verify(string(current), password)
	if err != nil {
		return NoMatch, fmt.Errorf("check current password: %w", err)
	}
	if !match {
		return refused(log, password, why, whyAttrs...)
	}
	if err := s.patch(ctx, pol, id.ID,
		kratosadmin.Op{Op: "remove", Path: []string{"metadata_admin", KeyAdmin, KeyPending}},
		kratosadmin.Op{Op: "add", Path: []string{"metadata_admin", KeyAdmin, KeySettled}, Value: settledVoid},
	); err != nil {
		return NoMatch, err
	}
	log.Info("user logged in with their current password; the pending reset is void", "event", "reset_void", "outcome", MatchCurrent)
	// Someone asked to recover the account and the user did not use the
	// temporary password: they hear of it, whether they asked or not.
	s.notices.Notify(notify.Notice{Kind: notify.ResetVoid, IdentityID: id.ID, At: now})
	return MatchCurrent, nil
}

// refused logs a password the migration hook refuses, once per refusal, and
// returns NoMatch. It never logs the password, nor the identifier (an
// address): the identity id (in log, when known), the verdict, why, and
// whether the password had white space at its ends, the usual copy-paste
// slip (a stray \r), which no temporary password has.
func refused(log *slog.Logger, password, why string, attrs ...any) (Verdict, error) {
	attrs = append([]any{"event", "login_refused", "verdict", NoMatch, "reason", why}, attrs...)
	if strings.TrimSpace(password) != password {
		attrs = append(attrs, "surrounding_whitespace", true)
	}
	log.Info("password refused at login", attrs...)
	return NoMatch, nil
}

// settleTemporary requires the change and ends other sessions before Kratos
// creates the new session and stores the temporary password's hash; Kratos
// reads the identity afresh for that write, so the metadata stays.
func (s *Service) settleTemporary(ctx context.Context, pol Policy, id *kratosadmin.Identity, p pending) (Verdict, error) {
	meta := with(id.MetadataPublic, map[string]any{KeyChangeRequired: true, KeyExpiresAt: p.ExpiresAt.UTC().Format(time.RFC3339)})
	if err := s.patch(ctx, pol, id.ID,
		kratosadmin.Op{Op: "add", Path: []string{"metadata_public"}, Value: meta},
		kratosadmin.Op{Op: "remove", Path: []string{"metadata_admin", KeyAdmin, KeyPending}},
		kratosadmin.Op{Op: "add", Path: []string{"metadata_admin", KeyAdmin, KeySettled}, Value: settledUsed},
	); err != nil {
		return NoMatch, err
	}
	if pol.RevokeSessions {
		if err := s.revoke(ctx, pol, id.ID, nil); err != nil {
			return NoMatch, err
		}
	}
	s.log.Info("temporary password used; a new password is required", "event", "reset_used", "identity_id", id.ID,
		"outcome", MatchTemporary, "sessions_revoked", pol.RevokeSessions)
	return MatchTemporary, nil
}

func (s *Service) patch(ctx context.Context, pol Policy, identityID string, ops ...kratosadmin.Op) error {
	_, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.ids.Patch(ctx, identityID, ops...)
	})
	if err != nil {
		return fmt.Errorf("update identity %s: %w", identityID, err)
	}
	return nil
}

// How a reset ended, kept in metadata_admin.email_gateway.settled.
const (
	settledVoid    = "void"
	settledUsed    = "used"
	settledChanged = "changed"
)

// PasswordChanged answers the settings hook, which runs before Kratos stores
// a password the user chose: it returns the identity's metadata_admin
// without the pending reset, for Kratos to write in the same update as the
// password, or nil when there is nothing to clear. Kratos does not send
// metadata_admin to web hooks, so it is read here; and it only takes a
// non-empty object back, which the gateway's own state always is.
//
// Clearing is tidiness, not safety: a pending reset is never reused once
// Kratos stores a hash of its own (see keepable).
//
// The user hears that their password changed (a password_changed notice),
// whether a reset was pending or not and even when the identity cannot be
// read now: the hook's answer lets the change go on either way. The notice
// waits until Kratos holds another hash than the one read here, so a
// settings flow that fails after the hook announces nothing.
func (s *Service) PasswordChanged(ctx context.Context, identityID string, pol Policy) (map[string]any, error) {
	unlock, _ := s.lock(ctx, identityID, pol.KratosTimeout, true)
	defer unlock()
	id, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (*kratosadmin.Identity, error) {
		return s.ids.Identity(ctx, identityID)
	})
	notice := notify.Notice{Kind: notify.PasswordChanged, IdentityID: identityID, At: s.now()}
	if err == nil {
		notice.Supersedes = notify.HashDigest(id.PasswordHash)
	}
	s.notices.Notify(notice)
	if err != nil {
		return nil, fmt.Errorf("look up identity: %w", err)
	}
	state := asMap(id.MetadataAdmin[KeyAdmin])
	if _, ok := state[KeyPending]; !ok {
		return nil, nil
	}
	state = with(without(state, KeyPending), map[string]any{KeySettled: settledChanged})
	s.log.Info("new password chosen while a reset was pending; the pending reset is cleared", "event", "reset_void",
		"identity_id", id.ID, "reason", "password_changed")
	return with(id.MetadataAdmin, map[string]any{KeyAdmin: state}), nil
}
