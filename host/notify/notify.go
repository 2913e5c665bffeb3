// Package notify mails users the notices that carry no secret (their
// password was changed; a pending reset was voided) in the background,
// through the plugin, to the recovery addresses Kratos holds, with a
// bounded queue and a bounded number of tries.
package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Kind names a notice; the names are the sdk's and the metric's label.
type Kind string

const (
	// PasswordChanged: "your password was changed", after the settings hook
	// saw a new password.
	PasswordChanged Kind = sdk.NoticePasswordChanged
	// ResetVoid: "someone asked to recover your account; you signed in with
	// your current password, so nothing changed".
	ResetVoid Kind = sdk.NoticeResetVoid
)

// Results of a notice, the values of the metric's result label.
const (
	ResultSent    = "sent"    // every recipient's SMTP server accepted it
	ResultRetried = "retried" // a try failed and another is due
	ResultFailed  = "failed"  // given up: the last try failed, or it cannot be built
	ResultDropped = "dropped" // never queued: the queue was full, or the host was stopping
	ResultSkipped = "skipped" // not sent on purpose: switched off, nobody to mail, nothing changed
)

// Notice is one thing a user is told about.
type Notice struct {
	Kind       Kind
	IdentityID string
	// At is when it happened, shown in the mail.
	At time.Time
	// Supersedes, for PasswordChanged, is HashDigest of the password hash
	// Kratos held when the settings hook ran. The settings hook runs just
	// before Kratos stores the new password, and Kratos may still fail to
	// (another hook refuses, a database error): the notice goes out only
	// once Kratos holds another hash. Empty means unknown (the hook could
	// not read the identity): the notice goes out without that check.
	Supersedes string
}

// HashDigest identifies a stored password hash without keeping it: a
// Notice waits on a digest, never on the hash. It is never empty, not even
// for an identity without a password ("" is a hash like any other here).
func HashDigest(hash string) string {
	sum := sha256.Sum256([]byte("kratos-email-gateway notice\x00" + hash))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Identities is what the notifier reads from Kratos's admin API: the
// identity as Kratos stores it, for its recovery addresses and traits.
type Identities interface {
	Identity(ctx context.Context, id string) (*kratosadmin.Identity, error)
}

// Sender is the plugin: it renders a notice and returns once the SMTP
// server accepted it.
type Sender interface {
	SendMessage(ctx context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error)
}

// Observer counts what happens to notices (package metrics).
type Observer interface {
	Notice(kind, result string)
}

// DefaultQueueSize bounds the notices accepted and not yet finished, those
// waiting for a retry included: one per identity that changed its password
// in the last minutes is far below it, and a full queue drops rather than
// holds memory or a hook.
const DefaultQueueSize = 1024

// defaultSends bounds the deliveries under way at once, so that a burst of
// notices queues here instead of crowding the plugin's connections, which
// Kratos's courier needs too.
const defaultSends = 2

// DrainTimeout is how long serve lets the notices still queued or waiting
// for a retry go out at shutdown.
const DrainTimeout = 10 * time.Second

// confirmWaits are the waits for Kratos to store the password the settings
// hook saw, before a PasswordChanged notice with Supersedes goes out. Kratos
// stores it right after the hook's answer, so the first wait usually ends
// it; they add up to about 13 s, longer than any settings request should
// take. They are not tries: nothing failed.
var confirmWaits = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
	1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond}

// Deps are the notifier's collaborators.
type Deps struct {
	// Config is the config in effect; each try reads it afresh, so a
	// reload applies to the notices still queued.
	Config   func() *config.Config
	Kratos   Identities
	Plugin   Sender
	Observer Observer
	Log      *slog.Logger
	// After waits, as time.After does (nil: time.After); tests pass a
	// clock of their own.
	After func(time.Duration) <-chan time.Time
	// QueueSize bounds the notices accepted and not yet finished (0:
	// DefaultQueueSize).
	QueueSize int
	// Durable, when set, stores each notice in the outbox, whose workers
	// call Attempt on any host sharing it: a notice then outlives this
	// host. A notice the outbox does not take stays in memory.
	Durable Durable
}

// Durable stores a notice for the outbox's workers (package outbox).
type Durable interface {
	EnqueueNotice(ctx context.Context, nt Notice) error
}

// durableTimeout bounds storing a notice in the outbox; the notice stays
// in memory when it is not stored by then.
const durableTimeout = 5 * time.Second

// Notifier sends notices in the background. Notify never blocks; Drain
// ends it.
type Notifier struct {
	cfg     func() *config.Config
	ids     Identities
	send    Sender
	obs     Observer
	log     *slog.Logger
	after   func(time.Duration) <-chan time.Time
	durable Durable

	// slots holds one token per notice accepted and not yet finished.
	slots chan struct{}
	// sends holds one token per delivery under way.
	sends chan struct{}
	// base is the context of every try; Drain cancels it at its deadline.
	base   context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	draining chan struct{} // closed by Drain: waits end at once, new notices are dropped
	closed   bool
	wg       sync.WaitGroup
}

// New returns a Notifier ready to take notices.
func New(d Deps) *Notifier {
	size := d.QueueSize
	if size <= 0 {
		size = DefaultQueueSize
	}
	after := d.After
	if after == nil {
		after = time.After
	}
	base, cancel := context.WithCancel(context.Background())
	return &Notifier{
		cfg: d.Config, ids: d.Kratos, send: d.Plugin, obs: d.Observer, log: d.Log, after: after, durable: d.Durable,
		slots: make(chan struct{}, size), sends: make(chan struct{}, defaultSends),
		base: base, cancel: cancel, draining: make(chan struct{}),
	}
}

// Notify queues n and returns at once: a notice never holds up the user's
// flow, nor fails it. A notice switched off is only counted (skipped); when
// the queue is full, or the host is stopping, it is logged and counted
// (dropped).
func (n *Notifier) Notify(nt Notice) {
	log := n.log.With("event", "notice", "kind", string(nt.Kind), "identity_id", nt.IdentityID)
	if !enabled(n.cfg(), nt.Kind) {
		log.Info("notice switched off; not sent", "result", ResultSkipped, "key", "notices."+string(nt.Kind)+".enabled")
		n.obs.Notice(string(nt.Kind), ResultSkipped)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		log.Warn("notice dropped: the gateway is shutting down", "result", ResultDropped)
		n.obs.Notice(string(nt.Kind), ResultDropped)
		return
	}
	select {
	case n.slots <- struct{}{}:
	default:
		log.Warn("notice dropped: the queue is full (Kratos or the SMTP server may be down for long)", "result", ResultDropped, "queue_size", cap(n.slots))
		n.obs.Notice(string(nt.Kind), ResultDropped)
		return
	}
	// Logged now, so that a notice a crash loses still shows in the log.
	log.Info("notice queued")
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { <-n.slots }()
		if n.store(nt, log) {
			return
		}
		n.run(nt, log)
	}()
}

// store hands nt to the outbox, when there is one, and reports whether it
// took it; the hook that asked for the notice does not wait for it.
func (n *Notifier) store(nt Notice, log *slog.Logger) bool {
	if n.durable == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(n.base, durableTimeout)
	defer cancel()
	if err := n.durable.EnqueueNotice(ctx, nt); err != nil {
		log.Warn("notice kept in this host's memory: the outbox did not take it", "store", "memory", "error", err.Error())
		return false
	}
	return true
}

// Drain stops taking notices and lets those queued or waiting for a retry
// go out until ctx ends: a notice waiting for a retry gets one last try at
// once. At ctx's end the tries under way are cancelled, and Drain returns
// once every notice has ended, with an error counting those not sent.
func (n *Notifier) Drain(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.draining)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
	}
	left := len(n.slots)
	n.cancel()
	<-done
	return fmt.Errorf("%d notice(s) were still being sent when the shutdown deadline passed; they are lost (each is logged)", left)
}

// Pending is the number of notices accepted and not yet finished.
func (n *Notifier) Pending() int { return len(n.slots) }

func enabled(c *config.Config, k Kind) bool {
	switch k {
	case PasswordChanged:
		return c.Notices.PasswordChanged.Enabled
	case ResetVoid:
		return c.Notices.ResetVoid.Enabled
	}
	return false
}

// outcome is what one try of a notice came to.
type outcome int

const (
	delivered outcome = iota // sent to every recipient
	skip                     // not to be sent: why says why
	retry                    // failed in a way that may pass
	giveUp                   // failed in a way that will not pass
	notStored                // Kratos does not hold the new password yet
)

// Reached is the set of recipients a notice got through to, so that a
// later try mails only the others. Addresses are compared case-folded.
type Reached interface {
	Has(address string) bool
	Add(address string)
	Len() int
}

// reachedSet is a Reached kept in memory, for the notices a host holds.
type reachedSet map[string]bool

func (s reachedSet) Has(address string) bool { return s[strings.ToLower(address)] }
func (s reachedSet) Add(address string)      { s[strings.ToLower(address)] = true }
func (s reachedSet) Len() int                { return len(s) }

// run tries nt until it is sent, skipped or given up.
func (n *Notifier) run(nt Notice, log *slog.Logger) {
	sent := reachedSet{}
	confirm := func(d time.Duration) bool {
		if n.stopping() {
			return false
		}
		n.wait(d)
		return true
	}
	for attempt := 1; ; attempt++ {
		if done, _ := n.settle(n.base, nt, log, sent, attempt, confirm, n.stopping); done {
			return
		}
		n.wait(RetryWait(n.cfg(), attempt))
	}
}

// Attempt makes the attempt-th try (from 1) of a notice the outbox holds,
// and logs and counts how it ended as for a notice kept in memory. It
// returns done when the notice needs nothing more: sent, skipped, or given
// up, which err then says why (the job is discarded). Not done, err is the
// failure of a try that may pass later, due after RetryWait. reached holds
// the recipients earlier tries got through to, which this one skips, and
// gains those this one reaches: the outbox keeps it with the job.
func (n *Notifier) Attempt(ctx context.Context, nt Notice, attempt int, reached Reached) (done bool, err error) {
	log := n.log.With("event", "notice", "kind", string(nt.Kind), "identity_id", nt.IdentityID, "store", "outbox")
	confirm := func(d time.Duration) bool {
		select {
		case <-n.after(d):
			return true
		case <-ctx.Done():
			return false
		}
	}
	return n.settle(ctx, nt, log, reached, attempt, confirm, func() bool { return false })
}

// RetryWait is the wait after the attempt-th failed try of a notice:
// notices.retry_backoff, doubled per try since, at most
// config.MaxNoticeRetryWait.
func RetryWait(cfg *config.Config, attempt int) time.Duration {
	return backoff(cfg.Notices.RetryBackoff, attempt)
}

// settle makes the attempt-th try of nt, waiting first with confirm (false:
// no more waiting) for Kratos to store the password a PasswordChanged
// notice is about, and logs and counts the end. done says the notice needs
// nothing more (a non-nil err: it was given up, at notices.max_attempts or
// when last says so); otherwise err is the try's failure and another is due.
func (n *Notifier) settle(ctx context.Context, nt Notice, log *slog.Logger, sent Reached, attempt int,
	confirm func(time.Duration) bool, last func() bool) (done bool, err error) {
	kind := string(nt.Kind)
	for confirms := 0; ; confirms++ {
		res, why, err := n.try(ctx, nt, sent)
		switch res {
		case delivered:
			log.Info("notice sent", "result", ResultSent, "attempt", attempt, "recipients", sent.Len())
			n.obs.Notice(kind, ResultSent)
			return true, nil
		case skip:
			log.Info("notice not sent: "+why, "result", ResultSkipped)
			n.obs.Notice(kind, ResultSkipped)
			return true, nil
		case notStored:
			if confirms < len(confirmWaits) && !confirm(confirmWaits[confirms]) && ctx.Err() != nil {
				// Stopping: the outbox keeps the notice for later.
				return false, ctx.Err()
			}
			if confirms == len(confirmWaits) || last() {
				log.Info("notice not sent: Kratos did not store the new password the settings hook saw (the settings flow failed after the hook)", "result", ResultSkipped)
				n.obs.Notice(kind, ResultSkipped)
				return true, nil
			}
			continue
		case giveUp:
			log.Error("notice not sent; it cannot be built or delivered as it is, so it is not tried again", "result", ResultFailed,
				"attempt", attempt, "error", err.Error())
			n.obs.Notice(kind, ResultFailed)
			return true, err
		}
		maxAttempts := n.cfg().Notices.MaxAttempts
		if attempt >= maxAttempts || last() {
			log.Error("notice not sent; given up", "result", ResultFailed, "attempt", attempt, "max_attempts", maxAttempts,
				"shutting_down", last(), "error", err.Error())
			n.obs.Notice(kind, ResultFailed)
			return true, err
		}
		log.Warn("notice not sent; trying again later", "result", ResultRetried, "attempt", attempt, "max_attempts", maxAttempts,
			"retry_in", RetryWait(n.cfg(), attempt).String(), "error", err.Error())
		n.obs.Notice(kind, ResultRetried)
		return false, err
	}
}

// backoff is the wait after the attempt-th try: first, doubled per try
// since, at most config.MaxNoticeRetryWait.
func backoff(first time.Duration, attempt int) time.Duration {
	d := first
	for range attempt - 1 {
		if d >= config.MaxNoticeRetryWait/2 {
			return config.MaxNoticeRetryWait
		}
		d *= 2
	}
	return min(d, config.MaxNoticeRetryWait)
}

// wait waits d, or less when the notifier is draining.
func (n *Notifier) wait(d time.Duration) {
	select {
	case <-n.after(d):
	case <-n.draining:
	case <-n.base.Done():
	}
}

// stopping reports whether Drain was called: a failed try is then the last.
func (n *Notifier) stopping() bool {
	select {
	case <-n.draining:
		return true
	default:
		return false
	}
}

// try makes one try of nt: it reads the identity from Kratos and mails the
// notice to each of its recovery addresses not in sent, adding those that
// got it.
func (n *Notifier) try(ctx context.Context, nt Notice, sent Reached) (outcome, string, error) {
	cfg := n.cfg()
	if !enabled(cfg, nt.Kind) {
		return skip, "switched off since it was queued (notices." + string(nt.Kind) + ".enabled)", nil
	}
	if err := ctx.Err(); err != nil {
		return retry, "", fmt.Errorf("shutting down: %w", err)
	}
	kctx, cancel := context.WithTimeout(ctx, cfg.Timeouts.Kratos)
	id, err := n.ids.Identity(kctx, nt.IdentityID)
	cancel()
	switch {
	case errors.Is(err, kratosadmin.ErrNotFound):
		return skip, "the identity no longer exists in Kratos", nil
	case err != nil:
		return retry, "", fmt.Errorf("read the identity's recovery addresses from Kratos: %w", err)
	}
	if nt.Kind == PasswordChanged && nt.Supersedes != "" && HashDigest(id.PasswordHash) == nt.Supersedes {
		return notStored, "", nil
	}
	recipients := Recipients(id)
	if len(recipients) == 0 {
		return skip, "the identity has no recovery address via email (that can take mail)", nil
	}
	traits, err := json.Marshal(id.Traits)
	if err != nil {
		return giveUp, "", fmt.Errorf("encode the identity's traits: %w", err)
	}
	msg := &sdk.NoticeMessage{
		Kind:           string(nt.Kind),
		At:             nt.At,
		IdentityID:     id.ID,
		IdentityTraits: traits,
		LoginURL:       cfg.Kratos.LoginUIURL,
		SettingsURL:    cfg.Kratos.SettingsUIURL,
	}
	var temporary, permanent []error
	for _, to := range recipients {
		if sent.Has(to) {
			continue
		}
		if err := n.deliver(ctx, cfg, to, msg); err != nil {
			if errors.Is(err, sdk.ErrInvalidArgument) || errors.Is(err, sdk.ErrUnsupported) {
				permanent = append(permanent, err)
			} else {
				temporary = append(temporary, err)
			}
			continue
		}
		sent.Add(to)
	}
	switch {
	case len(temporary) > 0:
		return retry, "", errors.Join(append(temporary, permanent...)...)
	case len(permanent) > 0:
		return giveUp, "", errors.Join(permanent...)
	}
	return delivered, "", nil
}

// deliver hands the notice for one recipient to the plugin, with the SMTP
// deadline of a delivery and one of the plugin's few send slots.
func (n *Notifier) deliver(ctx context.Context, cfg *config.Config, to string, msg *sdk.NoticeMessage) error {
	select {
	case n.sends <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("shutting down: %w", ctx.Err())
	}
	defer func() { <-n.sends }()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeouts.SMTP)
	defer cancel()
	if _, err := n.send.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: to, Notice: msg}); err != nil {
		return fmt.Errorf("send the %s notice: %w", msg.Kind, err)
	}
	return nil
}

// Recipients are the addresses a notice to id goes to: its recovery
// addresses via email as Kratos stores them, each once however Kratos
// cased it. Never an address from a request: whoever calls a hook cannot
// steer a notice elsewhere. Addresses under the reserved .invalid domain
// (RFC 2606), where no mail can arrive, are left out: the wiring check's
// canary identities (package wiring, canary.invalid) go through the
// settings hook too.
func Recipients(id *kratosadmin.Identity) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range id.RecoveryAddresses {
		a = strings.TrimSpace(a)
		key := strings.ToLower(a)
		if a == "" || seen[key] || strings.HasSuffix(key, ".invalid") {
			continue
		}
		seen[key] = true
		out = append(out, a)
	}
	return out
}
