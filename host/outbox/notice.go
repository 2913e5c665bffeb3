package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
)

// noticeKind names the job of a notice (package notify): no secret in it,
// so nothing is sealed.
const noticeKind = "notice"

// Noticer makes one try of a stored notice (notify.Notifier.Attempt).
type Noticer interface {
	Attempt(ctx context.Context, nt notify.Notice, attempt int) (done bool, err error)
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
	done, err := o.notices.Attempt(ctx, nt, job.Attempt)
	switch {
	case done && err == nil:
		if err := complete(ctx, o.pool, job); err != nil {
			log.Warn("job done but not marked yet; River marks it", "error", err.Error())
		}
		log.Info("job done", "event", "job_done")
		o.observe.Job(job.Queue, "done")
		return nil
	case done:
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
