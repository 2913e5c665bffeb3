// Package recovery turns a Kratos recovery message into a temporary password
// (issued by the plugin, set on the identity, mailed to the recipient) and
// settles it at the next login through Kratos's password migration hook.
package recovery

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/pwhash"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// ErrRecipientMismatch means the message's recipient is not one of the
// identity's recovery addresses: resetting would mail someone else a key.
var ErrRecipientMismatch = errors.New("recipient is not a recovery address of the identity")

// ErrNoRecoveryAddress means an admin reset found no address to mail.
var ErrNoRecoveryAddress = errors.New("identity has no recovery address to mail the temporary password to")

// Outcome says what a Reset did.
type Outcome string

const (
	// OutcomeSent: a new temporary password was set and mailed.
	OutcomeSent Outcome = "sent"
	// OutcomeDuplicate: Kratos sent a message the gateway already handled;
	// nothing changed, the mail the user has stays valid.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeCooldown: another reset was mailed within password.cooldown;
	// nothing changed, the mail the user has stays valid.
	OutcomeCooldown Outcome = "cooldown"
	// OutcomeFailed is only logged and counted: Reset returns an error then.
	OutcomeFailed Outcome = "failed"
)

// Identities is what the service needs from Kratos's admin API.
type Identities interface {
	Identity(ctx context.Context, id string) (*kratosadmin.Identity, error)
	FindByIdentifier(ctx context.Context, identifier string) (*kratosadmin.Identity, error)
	SetPassword(ctx context.Context, id *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error
	Patch(ctx context.Context, id string, ops ...kratosadmin.Op) error
	RevokeSessions(ctx context.Context, id string) error
}

// Mailer is what the service needs from the plugin.
type Mailer interface {
	IssuePassword(ctx context.Context, req *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error)
	SendMessage(ctx context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error)
}

// Policy is the part of the config a reset follows; read per request so a
// reload applies to the next message.
type Policy struct {
	TTL      time.Duration
	Cooldown time.Duration
	// KeepCurrent keeps the current password working until the temporary
	// one is used (password.keep_current_until_used).
	KeepCurrent bool
	// Keys seal and check what a pending reset keeps (secrets.cipher); nil
	// when none are configured.
	Keys           *sealing.Keyring
	RevokeSessions bool
	LoginURL       string
	KratosTimeout  time.Duration
	SMTPTimeout    time.Duration
}

// Request is one recovery message addressed to one identity.
type Request struct {
	IdentityID string
	// Recipient must be one of the identity's recovery addresses; empty
	// picks the first one (admin resets).
	Recipient string
	// Trigger says who asked, for the log: "self-service" or "admin".
	Trigger string
	// MessageKey identifies the Kratos message (see MessageKey); empty for
	// resets that no Kratos message asked for.
	MessageKey string
}

// MessageKey derives a stable id for a Kratos recovery message, which carries
// none of its own: the identity and the recovery code or link are unique per
// message. It is keyed so that metadata_admin never holds something from
// which the code could be guessed.
func MessageKey(secret, identityID, codeOrLink string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(identityID))
	m.Write([]byte{0})
	m.Write([]byte(codeOrLink))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Service performs resets and settles them at login. It holds no state
// between calls but the mailed_at marks still being written (see Wait):
// whatever must survive lives in Kratos.
type Service struct {
	ids   Identities
	mail  Mailer
	now   func() time.Time
	log   *slog.Logger
	locks keyedLocks
	// marks tracks the mailed_at marks still being written, see Reset.
	marks sync.WaitGroup
}

// New returns a Service; now is injectable so tests control expiry times.
func New(ids Identities, mail Mailer, now func() time.Time, log *slog.Logger) *Service {
	return &Service{ids: ids, mail: mail, now: now, log: log}
}

// Reset issues a temporary password for req.IdentityID and mails it. It
// returns only once the SMTP server accepted the mail; any error means the
// caller should answer so that Kratos retries, and every step is safe to run
// again: a retry issues a new password and a new mail, and only the last
// password set works.
//
// The mark that the mail went out (mailed_at, for the cooldown and retry
// detection) is written after Reset returned, so that Kratos's courier,
// which sends one message at a time, does not wait for a third Kratos
// write. The mark keeps the identity's lock until it is written: the next
// reset of the identity still sees it. Wait waits for the marks.
//
// With pol.KeepCurrent the current password is not touched: its hash is
// sealed into metadata_admin next to a keyed hash of the temporary password,
// and Kratos asks CheckPassword at the next login. Otherwise the temporary
// password replaces the current one at once, the change is required from the
// start, and sessions end now.
//
// Resets of one identity run one at a time in this process, so two
// concurrent recoveries cannot mail a password the other one replaced.
func (s *Service) Reset(ctx context.Context, req Request, pol Policy) (Outcome, error) {
	unlock := s.locks.lock(req.IdentityID)
	log := s.log.With("identity_id", req.IdentityID, "trigger", req.Trigger)
	outcome, keep, mark, err := s.reset(ctx, req, pol, log)
	// One audit event per reset, whatever happened; never a secret in it.
	attrs := []any{"audit", true, "event", "reset", "identity_id", req.IdentityID, "trigger", req.Trigger}
	if err != nil {
		unlock()
		log.Error("reset failed", append(attrs, "outcome", OutcomeFailed, "error", err.Error())...)
		return "", err
	}
	log.Info("reset", append(attrs, "outcome", outcome, "keeps_current_password", keep)...)
	if mark == nil {
		unlock()
		return outcome, nil
	}
	// The caller's ctx ends with its request; the mark has its own
	// deadline (pol.KratosTimeout).
	markCtx := context.WithoutCancel(ctx)
	s.marks.Go(func() {
		defer unlock()
		mark(markCtx)
	})
	return outcome, nil
}

// Wait returns once the marks of every mail Reset reported sent are written
// (or failed, which is logged). Call it before the process exits.
func (s *Service) Wait() { s.marks.Wait() }

// reset does the work of Reset. When the mail went out, mark writes
// mailed_at; Reset runs it.
func (s *Service) reset(ctx context.Context, req Request, pol Policy, log *slog.Logger) (_ Outcome, keep bool, mark func(context.Context), _ error) {
	id, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (*kratosadmin.Identity, error) {
		return s.ids.Identity(ctx, req.IdentityID)
	})
	if err != nil {
		return "", false, nil, fmt.Errorf("look up identity: %w", err)
	}
	recipient := req.Recipient
	if recipient == "" {
		// An admin reset: the mail goes to the identity's first recovery address.
		if len(id.RecoveryAddresses) == 0 {
			return "", false, nil, fmt.Errorf("identity %s: %w", id.ID, ErrNoRecoveryAddress)
		}
		recipient = id.RecoveryAddresses[0]
	}
	if !isRecoveryAddress(id, recipient) {
		return "", false, nil, fmt.Errorf("identity %s: %w", id.ID, ErrRecipientMismatch)
	}

	now := s.now().UTC()
	prev := asMap(id.MetadataAdmin[KeyAdmin])
	mailedAt, mailed := parseTime(prev[KeyMailedAt])
	sameMessage := req.MessageKey != "" && prev[KeyMessage] == req.MessageKey
	switch {
	case mailed && sameMessage:
		log.Info("message already handled; nothing changed")
		return OutcomeDuplicate, false, nil, nil
	case mailed && pol.Cooldown > 0 && now.Sub(mailedAt) < pol.Cooldown:
		log.Warn("recovery inside password.cooldown; the last mail stays valid",
			"last_mailed_at", mailedAt.Format(time.RFC3339), "cooldown", pol.Cooldown.String())
		return OutcomeCooldown, false, nil, nil
	}

	issued, err := s.mail.IssuePassword(ctx, &sdk.IssuePasswordRequest{IdentityID: id.ID})
	if err != nil {
		return "", false, nil, fmt.Errorf("issue password: %w", err)
	}
	expires := now.Add(pol.TTL)
	state := without(with(prev, map[string]any{KeyLastResetAt: now.Format(time.RFC3339), KeyMessage: req.MessageKey}), KeyMailedAt, KeyPending)

	keep = pol.KeepCurrent
	if keep {
		p, why, err := pendingFor(pol.Keys, id, issued.Password, expires)
		switch {
		case err != nil:
			return "", false, nil, err
		case why != "":
			keep = false
			log.Warn("cannot keep the current password; replacing it at once", "reason", why)
		default:
			state[KeyPending] = p.toMap()
		}
	}
	update := kratosadmin.PasswordUpdate{MetadataPublic: id.MetadataPublic, MetadataAdmin: with(id.MetadataAdmin, map[string]any{KeyAdmin: state})}
	if keep {
		update.UseMigrationHook = true
	} else {
		update.Password = issued.Password
		update.MetadataPublic = with(id.MetadataPublic, map[string]any{KeyChangeRequired: true, KeyExpiresAt: expires.Format(time.RFC3339)})
	}
	if _, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.ids.SetPassword(ctx, id, update)
	}); err != nil {
		return "", false, nil, fmt.Errorf("set temporary password: %w", err)
	}
	if !keep && pol.RevokeSessions {
		if err := s.revoke(ctx, pol, id.ID); err != nil {
			return "", false, nil, err
		}
	}

	reply, err := s.send(ctx, pol, id, recipient, issued.Password, expires)
	if err != nil {
		return "", false, nil, err
	}
	log.Info("temporary password mailed", "expires_at", expires.Format(time.RFC3339),
		"sessions_revoked", !keep && pol.RevokeSessions, "smtp_reply", reply)
	sentAt := s.now().UTC()
	mark = func(ctx context.Context) {
		// The mail is out, so the reset succeeded whatever happens here: a
		// failed mark only means a retry of this message would mail again.
		if _, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.ids.Patch(ctx, id.ID, kratosadmin.Op{Op: "add", Path: []string{"metadata_admin", KeyAdmin, KeyMailedAt}, Value: sentAt.Format(time.RFC3339)})
		}); err != nil {
			log.Warn("mail sent, but marking it in metadata_admin failed; cooldown and retry detection will not see it", "error", err.Error())
		}
	}
	return OutcomeSent, keep, mark, nil
}

// pendingFor builds the pending reset that keeps the current password. A
// later recovery while one is pending keeps the sealed hash it already has:
// Kratos no longer stores the hash then. why, when not empty, says why the
// current password cannot be kept.
func pendingFor(keys *sealing.Keyring, id *kratosadmin.Identity, temp string, expires time.Time) (p pending, why string, err error) {
	if keys == nil {
		return pending{}, "", errors.New("password.keep_current_until_used needs secrets.cipher: set GATEWAY_SECRETS__CIPHER")
	}
	p = pending{TempMAC: keys.MAC(temp, id.ID), ExpiresAt: expires}
	if old, ok := readPending(id.MetadataAdmin); ok && old.SealedHash != "" {
		p.SealedHash = old.SealedHash
		return p, "", nil
	}
	switch {
	case id.UsesMigrationHook:
		return pending{}, "the identity already uses Kratos's password migration hook without a pending reset of the gateway", nil
	case id.PasswordHash == "":
		return pending{}, "the identity has no password to keep", nil
	case !pwhash.Supported(id.PasswordHash):
		return pending{}, "the current password hash is neither bcrypt nor argon2id", nil
	}
	if p.SealedHash, err = keys.Seal([]byte(id.PasswordHash), id.ID); err != nil {
		return pending{}, "", fmt.Errorf("seal current password hash: %w", err)
	}
	return p, "", nil
}

func (s *Service) revoke(ctx context.Context, pol Policy, identityID string) error {
	_, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.ids.RevokeSessions(ctx, identityID)
	})
	if err != nil {
		return fmt.Errorf("revoke sessions: %w", err)
	}
	return nil
}

func (s *Service) send(ctx context.Context, pol Policy, id *kratosadmin.Identity, recipient, password string, expires time.Time) (string, error) {
	traits, err := json.Marshal(id.Traits)
	if err != nil {
		return "", fmt.Errorf("encode traits of identity %s: %w", id.ID, err)
	}
	resp, err := withTimeout(ctx, pol.SMTPTimeout, func(ctx context.Context) (*sdk.SendMessageResponse, error) {
		return s.mail.SendMessage(ctx, &sdk.SendMessageRequest{
			Recipient: recipient,
			Password: &sdk.PasswordMessage{
				Password:       password,
				ExpiresAt:      expires,
				LoginURL:       pol.LoginURL,
				IdentityID:     id.ID,
				IdentityTraits: traits,
			},
		})
	})
	if err != nil {
		return "", fmt.Errorf("send temporary password mail: %w", err)
	}
	return resp.ServerReply, nil
}

func withTimeout[T any](ctx context.Context, d time.Duration, f func(context.Context) (T, error)) (T, error) {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return f(ctx)
}

// isRecoveryAddress compares case-insensitively, as Kratos stores recovery
// addresses lower-cased.
func isRecoveryAddress(id *kratosadmin.Identity, recipient string) bool {
	for _, a := range id.RecoveryAddresses {
		if strings.EqualFold(a, recipient) {
			return true
		}
	}
	return false
}
