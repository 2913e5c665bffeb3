// Package recovery turns a Kratos recovery message into a temporary password:
// issued by the plugin, set on the identity, mailed to the recipient.
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
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// ErrRecipientMismatch means the message's recipient is not one of the
// identity's recovery addresses: resetting would mail someone else a key.
var ErrRecipientMismatch = errors.New("recipient is not a recovery address of the identity")

// Metadata keys other people's UIs and configs read (see DESIGN.md).
const (
	KeyChangeRequired = "password_change_required"
	KeyExpiresAt      = "temporary_password_expires_at"
	// KeyAdmin namespaces the gateway's own state in metadata_admin.
	KeyAdmin       = "email_gateway"
	KeyLastResetAt = "last_reset_at"
	// KeyMessage identifies the Kratos message a reset answered, so a retry
	// of that message is recognised.
	KeyMessage = "message_key"
	// KeyMailedAt is written once the SMTP server accepted the mail; only
	// mailed resets start a cooldown or count as handled.
	KeyMailedAt = "mailed_at"
)

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
)

// Identities is what the service needs from Kratos's admin API.
type Identities interface {
	Identity(ctx context.Context, id string) (*kratosadmin.Identity, error)
	SetPassword(ctx context.Context, id *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error
	SetAdminValue(ctx context.Context, id string, path []string, value any) error
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
	TTL            time.Duration
	Cooldown       time.Duration
	RevokeSessions bool
	LoginURL       string
	KratosTimeout  time.Duration
	SMTPTimeout    time.Duration
}

// Request is one recovery message addressed to one identity.
type Request struct {
	IdentityID string
	Recipient  string
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

// Service performs resets. It holds no state between calls: whatever must
// survive lives in Kratos.
type Service struct {
	ids   Identities
	mail  Mailer
	now   func() time.Time
	log   *slog.Logger
	locks keyedLocks
}

// New returns a Service; now is injectable so tests control expiry times.
func New(ids Identities, mail Mailer, now func() time.Time, log *slog.Logger) *Service {
	return &Service{ids: ids, mail: mail, now: now, log: log}
}

// Reset issues a temporary password for req.IdentityID, writes it with the
// change-required metadata, ends the identity's sessions if the policy says
// so, and mails it. It returns only once the SMTP server accepted the mail;
// any error means the caller should answer so that Kratos retries, and every
// step is safe to run again: a retry issues a new password and a new mail,
// and only the last password set works.
//
// Resets of one identity run one at a time in this process, so two
// concurrent recoveries cannot mail a password the other one replaced.
func (s *Service) Reset(ctx context.Context, req Request, pol Policy) (Outcome, error) {
	unlock := s.locks.lock(req.IdentityID)
	defer unlock()
	log := s.log.With("identity_id", req.IdentityID, "trigger", req.Trigger)

	id, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (*kratosadmin.Identity, error) {
		return s.ids.Identity(ctx, req.IdentityID)
	})
	if err != nil {
		return "", fmt.Errorf("look up identity: %w", err)
	}
	if !isRecoveryAddress(id, req.Recipient) {
		return "", fmt.Errorf("identity %s: %w", id.ID, ErrRecipientMismatch)
	}

	now := s.now().UTC()
	prev := asMap(id.MetadataAdmin[KeyAdmin])
	mailedAt, mailed := parseTime(prev[KeyMailedAt])
	sameMessage := req.MessageKey != "" && prev[KeyMessage] == req.MessageKey
	switch {
	case mailed && sameMessage:
		log.Info("message already handled; nothing changed", "event", "reset", "outcome", OutcomeDuplicate)
		return OutcomeDuplicate, nil
	case mailed && pol.Cooldown > 0 && now.Sub(mailedAt) < pol.Cooldown:
		log.Warn("recovery inside password.cooldown; the last mail stays valid", "event", "reset", "outcome", OutcomeCooldown,
			"last_mailed_at", mailedAt.Format(time.RFC3339), "cooldown", pol.Cooldown.String())
		return OutcomeCooldown, nil
	}

	issued, err := s.mail.IssuePassword(ctx, &sdk.IssuePasswordRequest{IdentityID: id.ID})
	if err != nil {
		return "", fmt.Errorf("issue password: %w", err)
	}

	expires := now.Add(pol.TTL)
	state := with(prev, map[string]any{KeyLastResetAt: now.Format(time.RFC3339), KeyMessage: req.MessageKey})
	delete(state, KeyMailedAt)
	update := kratosadmin.PasswordUpdate{
		Password:       issued.Password,
		MetadataPublic: with(id.MetadataPublic, map[string]any{KeyChangeRequired: true, KeyExpiresAt: expires.Format(time.RFC3339)}),
		MetadataAdmin:  with(id.MetadataAdmin, map[string]any{KeyAdmin: state}),
	}
	if _, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.ids.SetPassword(ctx, id, update)
	}); err != nil {
		return "", fmt.Errorf("set temporary password: %w", err)
	}
	if pol.RevokeSessions {
		if _, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.ids.RevokeSessions(ctx, id.ID)
		}); err != nil {
			return "", fmt.Errorf("revoke sessions: %w", err)
		}
	}

	traits, err := json.Marshal(id.Traits)
	if err != nil {
		return "", fmt.Errorf("encode traits of identity %s: %w", id.ID, err)
	}
	resp, err := withTimeout(ctx, pol.SMTPTimeout, func(ctx context.Context) (*sdk.SendMessageResponse, error) {
		return s.mail.SendMessage(ctx, &sdk.SendMessageRequest{
			Recipient: req.Recipient,
			Password: &sdk.PasswordMessage{
				Password:       issued.Password,
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

	// The mail is out, so the answer is success whatever happens next: a
	// failed mark only means a retry of this message would mail again.
	if _, err := withTimeout(ctx, pol.KratosTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.ids.SetAdminValue(ctx, id.ID, []string{KeyAdmin, KeyMailedAt}, s.now().UTC().Format(time.RFC3339))
	}); err != nil {
		log.Warn("mail sent, but marking it in metadata_admin failed; cooldown and retry detection will not see it", "error", err.Error())
	}
	log.Info("temporary password issued", "event", "reset", "outcome", OutcomeSent,
		"expires_at", expires.Format(time.RFC3339), "sessions_revoked", pol.RevokeSessions, "smtp_reply", resp.ServerReply)
	return OutcomeSent, nil
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

// with returns a copy of base with add laid over it; base is not modified.
func with(base, add map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(add))
	maps.Copy(out, base)
	maps.Copy(out, add)
	return out
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func parseTime(v any) (time.Time, bool) {
	str, _ := v.(string)
	t, err := time.Parse(time.RFC3339, str)
	return t, err == nil
}

// keyedLocks serialises work per key; entries live only while in use.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	users int
}

func (k *keyedLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()

	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
