package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"riverqueue.com/riverui"
)

// What operators do with the queue (gateway queue list|retry|discard, and
// River's UI on the admin listener).
//
// The gateway discards a job by cancelling it (river.JobCancel): what its
// audit lines call discarded is in River's state "cancelled", and so is a
// job an operator discarded. River's own state "discarded" means River gave
// up by itself: the attempts spent without the worker deciding (a panic,
// a job stuck past River's rescue). Both are final until retried.

// Job is one job as operators see it: never its sealed message.
type Job struct {
	ID    int64
	Queue string
	// State is River's: available, scheduled, pending, running,
	// retryable, completed, cancelled or discarded.
	State       string
	Attempt     int
	MaxAttempts int
	CreatedAt   time.Time
	// ScheduledAt is when it runs (next); FinalizedAt when it ended, or zero.
	ScheduledAt  time.Time
	FinalizedAt  time.Time
	TemplateType string
	IdentityID   string
	// LastError is the last attempt's error, empty for none.
	LastError string
	// ByOperator: an operator discarded it (gateway queue discard or the
	// River UI's cancel), rather than the gateway; while it is still
	// running, the worker was asked to stop.
	ByOperator bool
}

// StateFailed is the filter for both final states of a job that did not
// deliver: cancelled (the gateway's discards and an operator's) and
// discarded (River gave up by itself).
const StateFailed = "failed"

// Filter selects the jobs List returns, newest first.
type Filter struct {
	// States are River's job states, or StateFailed; empty: every state.
	States []string
	// Queue is one of Queues(); empty: all.
	Queue string
	// Limit bounds the jobs returned: 1..MaxListLimit, 0 for 50.
	Limit int
}

// MaxListLimit is the most jobs one List returns (River's bound).
const MaxListLimit = 10000

// ErrNoJob is returned by Retry and Discard for an id the queue does not
// hold: never taken, or finished longer than queue.retention ago.
var ErrNoJob = errors.New("no such job")

// ErrJobState is returned by Retry and Discard for a job whose state does
// not allow it.
var ErrJobState = errors.New("the job's state does not allow it")

// stateError is an ErrJobState saying why.
type stateError string

func (e stateError) Error() string        { return string(e) }
func (e stateError) Is(target error) bool { return target == ErrJobState }

// States lists River's job states, in the order of a job's life.
func States() []string {
	return []string{"pending", "scheduled", "available", "running", "retryable", "completed", "cancelled", "discarded"}
}

// List returns the jobs f selects, newest first.
func (o *Outbox) List(ctx context.Context, f Filter) ([]Job, error) {
	limit := f.Limit
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > MaxListLimit {
		return nil, fmt.Errorf("the limit %d is outside 1..%d", limit, MaxListLimit)
	}
	states, err := riverStates(f.States)
	if err != nil {
		return nil, err
	}
	// The builder returns copies: each call's result is the filter.
	p := river.NewJobListParams().Kinds(jobKind, noticeKind).OrderBy(river.JobListOrderByID, river.SortOrderDesc).First(limit)
	if len(states) > 0 {
		p = p.States(states...)
	}
	if f.Queue != "" {
		if !slices.Contains(Queues(), f.Queue) {
			return nil, fmt.Errorf("no queue %q: the queues are %s", f.Queue, strings.Join(Queues(), ", "))
		}
		p = p.Queues(f.Queue)
	}
	res, err := o.client.JobList(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("list the queue's jobs: %s", pgProblem(err))
	}
	jobs := make([]Job, 0, len(res.Jobs))
	for _, row := range res.Jobs {
		jobs = append(jobs, jobOf(row))
	}
	return jobs, nil
}

// riverStates checks the states named and expands StateFailed.
func riverStates(names []string) ([]rivertype.JobState, error) {
	var states []rivertype.JobState
	add := func(s rivertype.JobState) {
		if !slices.Contains(states, s) {
			states = append(states, s)
		}
	}
	for _, name := range names {
		switch {
		case name == StateFailed:
			add(rivertype.JobStateCancelled)
			add(rivertype.JobStateDiscarded)
		case slices.Contains(States(), name):
			add(rivertype.JobState(name))
		default:
			return nil, fmt.Errorf("no job state %q: the states are %s, and %s (cancelled and discarded)",
				name, strings.Join(States(), ", "), StateFailed)
		}
	}
	return states, nil
}

// jobOf is row as operators see it; the sealed message stays out.
func jobOf(row *rivertype.JobRow) Job {
	j := Job{
		ID:          row.ID,
		Queue:       row.Queue,
		State:       string(row.State),
		Attempt:     row.Attempt,
		MaxAttempts: row.MaxAttempts,
		CreatedAt:   row.CreatedAt,
		ScheduledAt: row.ScheduledAt,
	}
	if row.FinalizedAt != nil {
		j.FinalizedAt = *row.FinalizedAt
	}
	switch row.Kind {
	case noticeKind:
		var a noticeArgs
		if err := json.Unmarshal(row.EncodedArgs, &a); err == nil {
			j.TemplateType, j.IdentityID = "notice:"+a.Notice, a.IdentityID
		}
	default:
		var a args
		if err := json.Unmarshal(row.EncodedArgs, &a); err == nil {
			j.TemplateType, j.IdentityID = a.TemplateType, a.IdentityID
		}
	}
	if n := len(row.Errors); n > 0 {
		// The gateway's discards are River's cancellations: the prefix
		// River gives them says nothing more.
		j.LastError = strings.TrimPrefix(row.Errors[n-1].Error, "JobCancelError: ")
	}
	var meta struct {
		CancelAttemptedAt *time.Time `json:"cancel_attempted_at"`
	}
	if err := json.Unmarshal(row.Metadata, &meta); err == nil {
		// River marks a cancellation asked for from outside the worker (and
		// a retry removes the mark).
		j.ByOperator = meta.CancelAttemptedAt != nil &&
			(row.State == rivertype.JobStateCancelled || row.State == rivertype.JobStateRunning)
	}
	return j
}

// Change is what Retry or Discard did to a job: its state before, and the
// job after.
type Change struct {
	Previous string
	Job      Job
}

// Retry makes a job that did not deliver run again now: a cancelled,
// discarded, retryable or scheduled one becomes available (River's
// JobRetry; a job whose attempts were spent gets one more). A running job
// and a completed one are refused: the first may still deliver, the second
// did, and a retry would send the mail again.
func (o *Outbox) Retry(ctx context.Context, id int64) (Change, error) {
	return o.operate(ctx, id, "retry", func(tx pgx.Tx, state rivertype.JobState) (*rivertype.JobRow, error) {
		switch state {
		case rivertype.JobStateRunning:
			return nil, stateError(fmt.Sprintf("job %d is running: it is being delivered now, and is retried by itself if that fails", id))
		case rivertype.JobStateCompleted:
			return nil, stateError(fmt.Sprintf("job %d is completed: its mail was delivered, and a retry would send it again", id))
		}
		return o.client.JobRetryTx(ctx, tx, id)
	})
}

// Discard makes a job that has not run, or is running, never run again
// (River's JobCancel, state cancelled): a running one is stopped (its mail
// may still arrive if the SMTP server already took it). A job already
// cancelled or discarded stays as it is; a completed one is refused.
func (o *Outbox) Discard(ctx context.Context, id int64) (Change, error) {
	return o.operate(ctx, id, "discard", func(tx pgx.Tx, state rivertype.JobState) (*rivertype.JobRow, error) {
		switch state {
		case rivertype.JobStateCompleted:
			return nil, stateError(fmt.Sprintf("job %d is completed: its mail was delivered", id))
		case rivertype.JobStateCancelled, rivertype.JobStateDiscarded:
			return nil, nil
		}
		return o.client.JobCancelTx(ctx, tx, id)
	})
}

// operate runs do on job id, locked for the transaction so its state
// cannot change between the check and the change, and writes the audit
// line.
func (o *Outbox) operate(ctx context.Context, id int64, action string,
	do func(pgx.Tx, rivertype.JobState) (*rivertype.JobRow, error)) (Change, error) {
	tx, err := o.pool.Begin(ctx)
	if err != nil {
		return Change{}, fmt.Errorf("%s job %d: %s", action, id, pgProblem(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var state, kind string
	err = tx.QueryRow(ctx, "SELECT state::text, kind FROM river_job WHERE id = $1 FOR UPDATE", id).Scan(&state, &kind)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Change{}, fmt.Errorf("job %d: %w in the queue (a finished job is kept for queue.retention; see `gateway queue list`)", id, ErrNoJob)
	case err != nil:
		return Change{}, fmt.Errorf("%s job %d: %s", action, id, pgProblem(err))
	case kind != jobKind && kind != noticeKind:
		return Change{}, fmt.Errorf("job %d: %w in the outbox: its kind is %q, not a courier message or a notice", id, ErrNoJob, kind)
	}
	row, err := do(tx, rivertype.JobState(state))
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return Change{}, fmt.Errorf("%s job %d: a newer job holds the same message and waits or ran: retry or discard that one", action, id)
	case errors.Is(err, ErrJobState):
		return Change{}, err
	case err != nil:
		return Change{}, fmt.Errorf("%s job %d: %s", action, id, pgProblem(err))
	}
	noop := row == nil
	if noop {
		// Nothing to do: read it as it is.
		if row, err = o.client.JobGetTx(ctx, tx, id); err != nil {
			return Change{}, fmt.Errorf("%s job %d: %s", action, id, pgProblem(err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Change{}, fmt.Errorf("%s job %d: %s", action, id, pgProblem(err))
	}
	ch := Change{Previous: state, Job: jobOf(row)}
	if noop {
		return ch, nil
	}
	log := o.log.With("audit", true, "job_id", id, "queue", ch.Job.Queue, "template_type", ch.Job.TemplateType,
		"previous_state", ch.Previous, "state", ch.Job.State)
	if ch.Job.IdentityID != "" {
		log = log.With("identity_id", ch.Job.IdentityID)
	}
	if action == "retry" {
		log.Info("job retried by an operator", "event", "job_retried")
	} else {
		log.Info("job discarded by an operator", "event", "job_discarded", "reason", "operator")
	}
	return ch, nil
}

// UIHandler is River's UI of this outbox's queues, to be served under
// prefix (e.g. /admin/queue/): the jobs, their states and errors, and
// retry, cancel and delete. It has no authentication of its own: the
// caller must put every path under prefix behind one. start starts its
// background counts until ctx ends; call it once.
func (o *Outbox) UIHandler(prefix string, log *slog.Logger) (http.Handler, func(ctx context.Context) error, error) {
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(o.client, nil),
		// The arguments hold the sealed message only; no use on screen.
		JobListHideArgsByDefault: true,
		Logger:                   log.With("component", "riverui"),
		Prefix:                   prefix,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("set up River's UI: %w", err)
	}
	return h, h.Start, nil
}
