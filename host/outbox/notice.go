package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
)

// noticeKind names the job of a notice (package notify): no secret in it,
// so nothing is sealed.
const noticeKind = "notice"

// Noticer makes one try of a stored notice (notify.Notifier.Attempt).
type Noticer interface {
	Attempt(ctx context.Context, nt notify.Notice, attempt int, reached notify.Reached) (done bool, err error)
}

// noticeArgs are a notice job's arguments, as stored in river_job.args.
type noticeArgs struct {
	Notice     string    `json:"notice"`
	IdentityID string    `json:"identity_id"`
	At         time.Time `json:"at"`
	// Supersedes is notify.HashDigest of the hash Kratos held when the
	// settings hook ran, a digest of a digest: it tells nothing of the
	// password.
	Supersedes string `json:"supersedes,omitempty"`
}

func (noticeArgs) Kind() string { return noticeKind }

// EnqueueNotice stores nt in the notice queue, where any host's workers try
// it (notices.max_attempts tries, notices.retry_backoff apart): a notice
// then outlives the host that was asked for it.
func (o *Outbox) EnqueueNotice(ctx context.Context, nt notify.Notice) error {
	a := noticeArgs{Notice: string(nt.Kind), IdentityID: nt.IdentityID, At: nt.At, Supersedes: nt.Supersedes}
	// notify gives up at notices.max_attempts as it is at each try (a
	// reload may raise it); River's own bound is the highest allowed.
	res, err := o.client.Insert(ctx, a, &river.InsertOpts{Queue: QueueNotice, MaxAttempts: config.MaxNoticeAttempts})
	if err != nil {
		return fmt.Errorf("store the notice: %s", pgProblem(err))
	}
	o.log.Info("notice queued", "event", "queued", "job_id", res.Job.ID, "queue", QueueNotice, "notice", a.Notice, "identity_id", a.IdentityID)
	o.observe.Job(QueueNotice, "queued")
	return nil
}

// noticeWorker tries one notice job.
type noticeWorker struct {
	river.WorkerDefaults[noticeArgs]
	o *Outbox
}

func (w *noticeWorker) Work(ctx context.Context, job *river.Job[noticeArgs]) error {
	o := w.o
	a := job.Args
	nt := notify.Notice{Kind: notify.Kind(a.Notice), IdentityID: a.IdentityID, At: a.At, Supersedes: a.Supersedes}
	log := o.log.With("job_id", job.ID, "queue", job.Queue, "attempt", job.Attempt, "notice", a.Notice, "identity_id", a.IdentityID)
	if o.notices == nil {
		// An outbox started without a notifier (Deps.Notices) cannot send
		// notices; the retry puts the job back for a host that can.
		return fmt.Errorf("job %d: this host has no notifier", job.ID)
	}
	reached := readReached(job.Metadata, o.config().Keyring, a.IdentityID)
	ended, err := o.notices.Attempt(ctx, nt, job.Attempt, reached)
	if reached.added && err != nil {
		// River merges it into the job's metadata as the try ends, so the
		// next try, on any host (or an operator's `queue retry` of a notice
		// given up), skips who already got the notice.
		if err := river.MetadataSet(ctx, reachedKey, reached.digests); err != nil {
			log.Warn("the recipients this try reached are not recorded; the next try mails them again", "error", err.Error())
		}
	}
	switch {
	case ended && err == nil:
		done(ctx, o, log, job)
		return nil
	case ended:
		// notify logged why it gave up (its "notice not sent" line).
		log.Error("job discarded: the notice was given up", "audit", true, "event", "job_discarded", "reason", "notice_failed", "error", err.Error())
		o.observe.Job(job.Queue, "discarded")
		return river.JobCancel(err)
	case ctx.Err() != nil:
		log.Info("job stopped before its notice ended", "event", "job_stopped", "error", err.Error())
		return err
	default:
		o.observe.Job(job.Queue, "retried")
		return err
	}
}

// NextRetry spaces a notice's tries by notices.retry_backoff, as for the
// notices kept in memory.
func (w *noticeWorker) NextRetry(job *river.Job[noticeArgs]) time.Time {
	return time.Now().Add(notify.RetryWait(w.o.config(), job.Attempt))
}

// reachedKey is the key, in a notice job's metadata, of the recipients its
// earlier tries got through to.
const reachedKey = "notice_reached"

// reached is a notify.Reached kept in a notice job's metadata. It holds
// keyed digests, not addresses: an address is personal data, and river_job
// is read by more people (River's UI, `gateway queue list`) than Kratos's
// identities are.
type reached struct {
	keys     *sealing.Keyring
	identity string
	digests  []string
	added    bool
}

// readReached reads what the job's earlier tries recorded. A record it
// cannot read counts as empty: the worst that follows is a recipient
// mailed twice, never one left out.
func readReached(metadata []byte, keys *sealing.Keyring, identityID string) *reached {
	r := &reached{keys: keys, identity: identityID}
	var m struct {
		Digests []string `json:"notice_reached"`
	}
	if json.Unmarshal(metadata, &m) == nil {
		r.digests = m.Digests
	}
	return r
}

// context binds a digest to the identity, so the digest of an address is
// different for each identity it is a recovery address of.
func (r *reached) context() string { return "notice recipient\x00" + r.identity }

// Has checks against every configured key of secrets.cipher, so a key
// rotation between two tries does not make anyone a new recipient.
func (r *reached) Has(address string) bool {
	if r.keys == nil {
		return false
	}
	for _, d := range r.digests {
		if r.keys.SameMessage(d, r.context(), strings.ToLower(address)) {
			return true
		}
	}
	return false
}

// Add records nothing without secrets.cipher (no key to digest with): the
// next try then mails every recipient again.
func (r *reached) Add(address string) {
	if r.keys == nil {
		return
	}
	r.digests = append(r.digests, r.keys.MessageKey(r.context(), strings.ToLower(address)))
	r.added = true
}

func (r *reached) Len() int { return len(r.digests) }
