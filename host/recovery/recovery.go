// Package recovery turns a Kratos recovery message into a temporary password
// (issued by the plugin, set on the identity, mailed to the recipient) and
// settles it at the next login through Kratos's password migration hook.
package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/idna"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/pwhash"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// ErrRecipientMismatch means the message's recipient is not one of the
// identity's recovery addresses: resetting would mail someone else a key.
var ErrRecipientMismatch = errors.New("recipient is not a recovery address of the identity")

// ErrNoRecoveryAddress means an admin reset found no address to mail.
var ErrNoRecoveryAddress = errors.New("identity has no recovery address to mail the temporary password to")

// ErrNoKeys means secrets.cipher is not configured, so nothing can be sealed
// or recognised.
var ErrNoKeys = errors.New("secrets.cipher is not configured: set GATEWAY_SECRETS__CIPHER")

// Outcome says what a Reset did.
type Outcome string

const (
	// OutcomeSent: a new temporary password was set and mailed.
	OutcomeSent Outcome = "sent"
	// OutcomeDuplicate: Kratos sent a message the gateway already handled;
	// nothing changed, the mail the user has stays valid.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeCooldown: a reset mailed within password.cooldown is still
	// pending and usable; nothing changed, the mail the user has stays valid.
	OutcomeCooldown Outcome = "cooldown"
	// OutcomeKratosMessage: the gateway cannot take over this recovery
	// safely (Result.Reason says why); nothing changed, and the caller
	// delivers Kratos's own recovery message so the user still recovers.
	OutcomeKratosMessage Outcome = "kratos_message"
	// OutcomeFailed is only logged and counted: Reset returns an error then.
	OutcomeFailed Outcome = "failed"
)

// Reasons name why a reset did what it did; they are metric label values
// and never hold a secret.
const (
	// ReasonUnverifiableHash: the current password's hash is in a format
	// the gateway cannot check (md5, sha1, firescrypt, ...), so it cannot
	// keep the current password working through the migration hook.
	ReasonUnverifiableHash = "unverifiable_hash"
	// ReasonForeignMigrationHook: Kratos already asks a password migration
	// hook for this identity, and not for a reset of the gateway.
	ReasonForeignMigrationHook = "foreign_migration_hook"
	// ReasonSealUnreadable: the pending reset's sealed hash opens with no
	// configured secrets.cipher key, so the current password is unknown.
	ReasonSealUnreadable = "sealed_hash_unreadable"
	// ReasonWiringUnverified: the gateway has not yet proven that Kratos
	// calls its password migration hook (see package wiring), so a pending
	// reset might lock the user out.
	ReasonWiringUnverified = "wiring_unverified"
	// ReasonPending: a reset mailed within the cooldown is still usable.
	ReasonPending = "pending_reset_usable"
)

// Result is what a Reset did and, for every outcome but OutcomeSent, why.
type Result struct {
	Outcome Outcome
	// Reason is a short, secret-free explanation for the answer and the log.
	Reason string
	// Spent is where the reset's time went.
	Spent Spent
}

// Spent is the time a reset spent waiting on Kratos's admin API and on the
// plugin (SMTP included), recorded where each call is made, so that the
// caller can log the host's own share of a message (BENCHMARKS.md). The
// mailed_at mark written after Reset returned is not in it.
type Spent struct {
	Kratos time.Duration
	Plugin time.Duration
}

// Identities is what the service needs from Kratos's admin API.
type Identities interface {
	Identity(ctx context.Context, id string) (*kratosadmin.Identity, error)
	FindByIdentifier(ctx context.Context, identifier string) (*kratosadmin.Identity, error)
	SetPassword(ctx context.Context, id *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error
	Patch(ctx context.Context, id string, ops ...kratosadmin.Op) error
	RevokeSessions(ctx context.Context, id string) error
}

// Mailer is what the service needs from the plugin. Render is an optional
// capability of a plugin (sdk.Renderer): a plugin without it answers
// sdk.ErrUnsupported, and Reset then skips the check it is used for.
type Mailer interface {
	IssuePassword(ctx context.Context, req *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error)
	Render(ctx context.Context, req *sdk.RenderRequest) (*sdk.RenderResponse, error)
	SendMessage(ctx context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error)
}

// Notices hears of what a user is told about (package notify): a reset
// voided at login, a password changed in the settings flow. Notify must
// return at once; the notice is sent, or not, in the background.
type Notices interface {
	Notify(notify.Notice)
}

// noNotices is the Notices of a Service built without WithNotices.
type noNotices struct{}

func (noNotices) Notify(notify.Notice) {}

// Option configures a Service.
type Option func(*Service)

// Locker serialises the work on one identity across every host sharing it
// (package outbox: a PostgreSQL advisory lock). Lock waits until ctx ends.
type Locker interface {
	Lock(ctx context.Context, identityID string) (unlock func(), err error)
}

// WithLocker makes every reset and every settlement at login take the
// identity's lock from l too, after this process's own. Without it the
// identity's work is serialised in this process only, which is all a
// single host, or hosts that each deliver while Kratos waits, need.
func WithLocker(l Locker) Option {
	return func(s *Service) { s.locker = l }
}

// lockWait bounds the wait for another host's work on the same identity:
// a reset takes a few Kratos calls and one SMTP send.
const lockWait = 30 * time.Second

// lock takes the identity's lock in this process and, with WithLocker,
// across hosts, waiting at most wait for the latter. A reset needs both and
// fails without (it is retried); the settlement at login and the settings
// hook, which a user waits for, go on with this process's lock alone and a
// warning (best: false), since refusing would lock users out while the
// outbox's database is down.
func (s *Service) lock(ctx context.Context, identityID string, wait time.Duration, best bool) (unlock func(), err error) {
	local := s.locks.lock(identityID)
	if s.locker == nil {
		return local, nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	remote, err := s.locker.Lock(ctx, identityID)
	if err != nil {
		if best {
			s.log.Warn("identity not locked across hosts; going on with this host's lock", "identity_id", identityID, "error", err.Error())
			return local, nil
		}
		local()
		return nil, fmt.Errorf("lock the identity across hosts: %w", err)
	}
	return func() {
		remote()
		local()
	}, nil
}

// WithNotices makes the Service tell n of the events users are told about.
// Without it nothing is told: `gateway reset` has no notifier.
func WithNotices(n Notices) Option {
	return func(s *Service) { s.notices = n }
}

// Policy is the part of the config a reset follows; read per request so a
// reload applies to the next message.
type Policy struct {
	TTL      time.Duration
	Cooldown time.Duration
	// KeepCurrent keeps the current password working until the temporary
	// one is used: always for self-service recovery, which anyone who knows
	// an address can start. Admin resets replace at once.
	KeepCurrent bool
	// Keys seal and check what a pending reset keeps and key the message
	// digests (secrets.cipher); nil when none are configured.
	Keys *sealing.Keyring
	// HookUnproven, when not empty, says why the gateway does not know that
	// Kratos calls its password migration hook: a reset that relies on the
	// hook is then left to Kratos.
	HookUnproven   string
	RevokeSessions bool
	LoginURL       string
	KratosTimeout  time.Duration
	SMTPTimeout    time.Duration
}

// Request is one recovery message addressed to one identity.
type Request struct {
	IdentityID string
	// Recipient must be one of the identity's recovery addresses; empty
	// picks the first one (admin resets). The mail goes to the address as
	// Kratos stores it, never to this string.
	Recipient string
	// Trigger says who asked, for the log: "self-service" or "admin".
	Trigger string
	// Message identifies the Kratos message (its recovery code or link, or
	// an admin run's id); empty for resets no message asked for. It is a
	// secret: only a keyed digest of it is kept (sealing.Keyring.MessageKey).
	Message string
	// KratosCode and KratosURL are the recovery code (code method) or link
	// (link method) of the Kratos message that asked for the reset, handed
	// to the mail templates as .RecoveryCode and .RecoveryURL for a UI that
	// waits for them; empty for admin resets. Secrets: they log the user in
	// through Kratos's own recovery flow, so never log them.
	KratosCode string
	KratosURL  string
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
	// noRender logs once that the plugin cannot render, see reset.
	noRender sync.Once
	// marks tracks the mailed_at marks still being written, see Reset.
	marks sync.WaitGroup
	// notices hears of voided resets and changed passwords.
	notices Notices
	// locker, when set, serialises an identity's work across hosts.
	locker Locker
}

// New returns a Service; now is injectable so tests control expiry times.
func New(ids Identities, mail Mailer, now func() time.Time, log *slog.Logger, opts ...Option) *Service {
	s := &Service{ids: ids, mail: mail, now: now, log: log, notices: noNotices{}}
	for _, o := range opts {
		o(s)
	}
	return s
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
// With pol.KeepCurrent nothing the user has is touched before the temporary
// password is used: the current hash (if any) is sealed into metadata_admin
// next to a keyed hash of the temporary password, and Kratos asks
// CheckPassword at the next login. When the current password cannot be kept
// that way, Reset changes nothing and answers OutcomeKratosMessage. Without
// pol.KeepCurrent (admin resets) the temporary password replaces the current
// one at once, the change is required from the start, and sessions end now.
//
// Resets of one identity run one at a time in this process, so two
// concurrent recoveries cannot mail a password the other one replaced.
func (s *Service) Reset(ctx context.Context, req Request, pol Policy) (Result, error) {
	log := s.log.With("identity_id", req.IdentityID, "trigger", req.Trigger)
	unlock, err := s.lock(ctx, req.IdentityID, lockWait, false)
	if err != nil {
		s.log.Error("reset failed", "audit", true, "event", "reset", "identity_id", req.IdentityID, "trigger", req.Trigger,
			"outcome", OutcomeFailed, "error", err.Error())
		return Result{}, err
	}
	var spent Spent
	res, keep, mark, err := s.reset(ctx, req, pol, log, &spent)
	res.Spent = spent
	// One audit event per reset, whatever happened; never a secret in it.
	// It is complete on its own, so it goes to s.log: log already holds
	// identity_id and trigger, and through it each would appear twice.
	attrs := []any{"audit", true, "event", "reset", "identity_id", req.IdentityID, "trigger", req.Trigger}
	if err != nil {
		unlock()
		s.log.Error("reset failed", append(attrs, "outcome", OutcomeFailed, "error", err.Error())...)
		return Result{}, err
	}
	attrs = append(attrs, "outcome", res.Outcome, "keeps_current_password", keep)
	if res.Reason != "" {
		attrs = append(attrs, "reason", res.Reason)
	}
	s.log.Info("reset", attrs...)
	if mark == nil {
		unlock()
		return res, nil
	}
	// The caller's ctx ends with its request; the mark has its own
	// deadline (pol.KratosTimeout).
	markCtx := context.WithoutCancel(ctx)
	s.marks.Go(func() {
		defer unlock()
		mark(markCtx)
	})
	return res, nil
}

// Wait returns once the marks of every mail Reset reported sent are written
// (or failed, which is logged). Call it before the process exits.
func (s *Service) Wait() { s.marks.Wait() }

// reset does the work of Reset. When the mail went out, mark writes
// mailed_at; Reset runs it. Every check that can refuse runs before the
// identity is changed, the rendering of the mail included.
func (s *Service) reset(ctx context.Context, req Request, pol Policy, log *slog.Logger, spent *Spent) (_ Result, keep bool, mark func(context.Context), _ error) {
	if pol.Keys == nil {
		return Result{}, false, nil, ErrNoKeys
	}
	id, err := timed(ctx, pol.KratosTimeout, &spent.Kratos, func(ctx context.Context) (*kratosadmin.Identity, error) {
		return s.ids.Identity(ctx, req.IdentityID)
	})
	if err != nil {
		return Result{}, false, nil, fmt.Errorf("look up identity: %w", err)
	}
	recipient, err := recipientOf(id, req.Recipient)
	if err != nil {
		return Result{}, false, nil, err
	}

	now := s.now().UTC()
	prev := asMap(id.MetadataAdmin[KeyAdmin])
	mailedAt, mailed := parseTime(prev[KeyMailedAt])
	stored, _ := prev[KeyMessage].(string)
	if mailed && req.Message != "" && pol.Keys.SameMessage(stored, id.ID, req.Message) {
		log.Info("message already handled; nothing changed")
		return Result{Outcome: OutcomeDuplicate, Reason: "this message was mailed at " + mailedAt.Format(time.RFC3339)}, false, nil, nil
	}
	if mailed && pol.Cooldown > 0 && now.Sub(mailedAt) < pol.Cooldown {
		// Only a reset whose password still logs in holds the cooldown:
		// after the user voided it, used it and changed it, or let it
		// expire, the last mail is worthless and a new one is due.
		last := lastReset(id, now)
		if last == lastUsable {
			log.Warn("recovery inside password.cooldown; the last mail stays valid", "reason", ReasonPending,
				"last_mailed_at", mailedAt.Format(time.RFC3339), "cooldown", pol.Cooldown.String())
			return Result{Outcome: OutcomeCooldown, Reason: ReasonPending}, false, nil, nil
		}
		log.Info("recovery inside password.cooldown, but the last reset no longer logs in; mailing a new one",
			"last_reset", string(last), "last_mailed_at", mailedAt.Format(time.RFC3339))
	}

	keep = pol.KeepCurrent
	var sealed string
	if keep && pol.HookUnproven != "" {
		log.Warn("Kratos's password migration hook is not proven; Kratos's own recovery message goes out and nothing changes",
			"reason", ReasonWiringUnverified, "wiring", pol.HookUnproven)
		return Result{Outcome: OutcomeKratosMessage, Reason: ReasonWiringUnverified}, false, nil, nil
	}
	if keep {
		var fallback string
		if sealed, fallback, err = keepable(pol.Keys, id); err != nil {
			return Result{}, false, nil, err
		}
		if fallback != "" {
			log.Warn("cannot keep the current password; Kratos's own recovery message goes out and nothing changes",
				"reason", fallback, "password_hash_format", pwhash.Format(id.PasswordHash))
			return Result{Outcome: OutcomeKratosMessage, Reason: fallback}, false, nil, nil
		}
	}

	issued, err := timed(ctx, 0, &spent.Plugin, func(ctx context.Context) (*sdk.IssuePasswordResponse, error) {
		return s.mail.IssuePassword(ctx, &sdk.IssuePasswordRequest{IdentityID: id.ID})
	})
	if err != nil {
		return Result{}, false, nil, fmt.Errorf("issue password: %w", err)
	}
	expires := now.Add(pol.TTL)
	msg, err := passwordMessage(pol, id, issued.Password, expires, req)
	if err != nil {
		return Result{}, false, nil, err
	}
	// A mail that cannot be built must change nothing: render it first.
	// A plugin without the Render capability cannot be asked, and the
	// check is skipped: a mail it cannot build then fails at the send,
	// after the identity changed, like a mail the SMTP server refuses. That
	// stays safe: a self-service reset keeps the current password working
	// until the temporary one is used, and Kratos retries; an admin reset
	// has replaced the password and reports the failure to the admin, whose
	// rerun mails a working one.
	_, err = timed(ctx, 0, &spent.Plugin, func(ctx context.Context) (*sdk.RenderResponse, error) {
		return s.mail.Render(ctx, &sdk.RenderRequest{Recipient: recipient, Password: msg})
	})
	switch {
	case errors.Is(err, sdk.ErrUnsupported):
		s.noRender.Do(func() {
			s.log.Warn("the plugin does not offer Render: resets skip the check that the mail can be built before they change the identity")
		})
	case err != nil:
		return Result{}, false, nil, fmt.Errorf("render temporary password mail (nothing changed): %w", err)
	}

	state := without(with(prev, map[string]any{KeyLastResetAt: now.Format(time.RFC3339), KeyMessage: ""}), KeyMailedAt, KeyPending, KeySettled)
	if req.Message != "" {
		state[KeyMessage] = pol.Keys.MessageKey(id.ID, req.Message)
	}
	update := kratosadmin.PasswordUpdate{MetadataPublic: id.MetadataPublic}
	if keep {
		state[KeyPending] = pending{SealedHash: sealed, TempMAC: pol.Keys.MAC(issued.Password, id.ID), ExpiresAt: expires}.toMap()
		update.UseMigrationHook = true
	} else {
		update.Password = issued.Password
		update.MetadataPublic = with(id.MetadataPublic, map[string]any{KeyChangeRequired: true, KeyExpiresAt: expires.Format(time.RFC3339)})
	}
	update.MetadataAdmin = with(id.MetadataAdmin, map[string]any{KeyAdmin: state})
	if _, err := timed(ctx, pol.KratosTimeout, &spent.Kratos, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.ids.SetPassword(ctx, id, update)
	}); err != nil {
		return Result{}, false, nil, fmt.Errorf("set temporary password: %w", err)
	}
	if !keep && pol.RevokeSessions {
		if err := s.revoke(ctx, pol, id.ID, &spent.Kratos); err != nil {
			return Result{}, false, nil, err
		}
	}

	reply, err := s.send(ctx, pol, recipient, msg, &spent.Plugin)
	if err != nil {
		return Result{}, false, nil, err
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
	return Result{Outcome: OutcomeSent}, keep, mark, nil
}

// keepable says what a pending reset of id keeps so that the current
// password goes on working: the sealed current hash, or "" when the
// identity has no password. fallback, when set, says why the current
// password cannot be kept; the reset must then change nothing.
//
// A sealed hash is only as good as the moment it was sealed: it is reused
// only while Kratos holds no hash of its own (the credential still points at
// the migration hook, as the gateway's last reset left it). A password
// Kratos stored since (a settings flow, an admin PUT, a login that settled
// the reset) is the current one, and any older pending reset is stale.
func keepable(keys *sealing.Keyring, id *kratosadmin.Identity) (sealed, fallback string, err error) {
	old, pendingKept := readPending(id.MetadataAdmin)
	switch {
	case id.UsesMigrationHook && id.PasswordHash == "" && pendingKept:
		if old.SealedHash != "" {
			if _, err := keys.Open(old.SealedHash, id.ID); err != nil {
				return "", ReasonSealUnreadable, nil
			}
		}
		return old.SealedHash, "", nil
	case id.UsesMigrationHook:
		return "", ReasonForeignMigrationHook, nil
	case id.PasswordHash == "":
		// No password (code, OIDC or passkey sign-in): nothing to keep.
		return "", "", nil
	case !pwhash.Supported(id.PasswordHash):
		return "", ReasonUnverifiableHash, nil
	}
	if sealed, err = keys.Seal([]byte(id.PasswordHash), id.ID); err != nil {
		return "", "", fmt.Errorf("seal current password hash: %w", err)
	}
	return sealed, "", nil
}

// lastResetState says whether the identity's last reset still logs in.
type lastResetState string

const (
	lastUsable lastResetState = "usable"
	// lastStale: Kratos stored a password since the pending reset was
	// written; the temporary password no longer logs in.
	lastStale   lastResetState = "superseded"
	lastExpired lastResetState = "expired"
	// lastSettled: the reset was used and the new password chosen, or
	// voided by a login with the current password.
	lastSettled lastResetState = "settled"
)

func lastReset(id *kratosadmin.Identity, now time.Time) lastResetState {
	if p, ok := readPending(id.MetadataAdmin); ok {
		switch {
		case !id.UsesMigrationHook || id.PasswordHash != "":
			return lastStale
		case !now.Before(p.ExpiresAt):
			return lastExpired
		}
		return lastUsable
	}
	// A temporary password set at once (admin reset), or used and not yet
	// replaced, logs in until its expiry.
	if id.MetadataPublic[KeyChangeRequired] == true {
		if exp, ok := parseTime(id.MetadataPublic[KeyExpiresAt]); ok && now.Before(exp) {
			return lastUsable
		}
		return lastExpired
	}
	if settled, _ := asMap(id.MetadataAdmin[KeyAdmin])[KeySettled].(string); settled != "" {
		return lastResetState(settled)
	}
	return lastSettled
}

// revoke ends the identity's sessions; spent, when not nil, counts the
// call's time.
func (s *Service) revoke(ctx context.Context, pol Policy, identityID string, spent *time.Duration) error {
	_, err := timed(ctx, pol.KratosTimeout, spent, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.ids.RevokeSessions(ctx, identityID)
	})
	if err != nil {
		return fmt.Errorf("revoke sessions: %w", err)
	}
	return nil
}

// passwordMessage is the data of the temporary password mail, built once so
// that the mail rendered as a check is the mail sent.
func passwordMessage(pol Policy, id *kratosadmin.Identity, password string, expires time.Time, req Request) (*sdk.PasswordMessage, error) {
	traits, err := json.Marshal(id.Traits)
	if err != nil {
		return nil, fmt.Errorf("encode traits of identity %s: %w", id.ID, err)
	}
	return &sdk.PasswordMessage{
		Password:       password,
		ExpiresAt:      expires,
		LoginURL:       pol.LoginURL,
		IdentityID:     id.ID,
		IdentityTraits: traits,
		RecoveryCode:   req.KratosCode,
		RecoveryURL:    req.KratosURL,
	}, nil
}

func (s *Service) send(ctx context.Context, pol Policy, recipient string, msg *sdk.PasswordMessage, spent *time.Duration) (string, error) {
	resp, err := timed(ctx, pol.SMTPTimeout, spent, func(ctx context.Context) (*sdk.SendMessageResponse, error) {
		return s.mail.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: recipient, Password: msg})
	})
	if err != nil {
		return "", fmt.Errorf("send temporary password mail: %w", err)
	}
	return resp.ServerReply, nil
}

// timed is withTimeout that adds the time the call took to *spent (unless
// spent is nil): a reset records where its time went at each call it makes.
func timed[T any](ctx context.Context, d time.Duration, spent *time.Duration, f func(context.Context) (T, error)) (T, error) {
	if spent != nil {
		defer func(start time.Time) { *spent += time.Since(start) }(time.Now())
	}
	return withTimeout(ctx, d, f)
}

func withTimeout[T any](ctx context.Context, d time.Duration, f func(context.Context) (T, error)) (T, error) {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return f(ctx)
}

// recipientOf returns the recovery address of id that the mail goes to:
// the one given equals (see sameAddress), or the first one for an admin
// reset that names none. It is the address as Kratos stores it, so a
// look-alike the caller sent never receives a password.
func recipientOf(id *kratosadmin.Identity, given string) (string, error) {
	if given == "" {
		if len(id.RecoveryAddresses) == 0 {
			return "", fmt.Errorf("identity %s: %w", id.ID, ErrNoRecoveryAddress)
		}
		return id.RecoveryAddresses[0], nil
	}
	for _, a := range id.RecoveryAddresses {
		if sameAddress(a, given) {
			return a, nil
		}
	}
	return "", fmt.Errorf("identity %s: %w", id.ID, ErrRecipientMismatch)
}

// sameAddress compares two mail addresses the way mail systems do: the
// local part byte for byte but for ASCII case (Kratos lower-cases what it
// stores), the domain case-insensitively after IDNA conversion. Unicode case
// folding is not used: it equates the Kelvin sign with k and the long s
// with s, so a stranger's look-alike address would match.
func sameAddress(stored, given string) bool {
	sl, sd, ok1 := splitAddress(stored)
	gl, gd, ok2 := splitAddress(given)
	return ok1 && ok2 && asciiEqualFold(sl, gl) && asciiEqualFold(sd, gd)
}

func splitAddress(a string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return "", "", false
	}
	domain, err := idna.Lookup.ToASCII(strings.TrimSuffix(asciiLower(a[i+1:]), "."))
	if err != nil {
		return "", "", false
	}
	return a[:i], domain, true
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func asciiEqualFold(a, b string) bool {
	return len(a) == len(b) && asciiLower(a) == asciiLower(b)
}
