// Package outbox keeps Kratos's courier messages in PostgreSQL, through
// River, and delivers them with workers, so that /courier answers once a
// message is stored instead of after Kratos's admin calls and SMTP.
//
// A message is one job, its content sealed with secrets.cipher (a recovery
// code or link is a secret) and its unique key a digest of the message
// under the same keys, so that Kratos's retry of a message already taken
// inserts nothing. Recovery messages and every other mail have queues of
// their own, so a login code never waits behind a storm of recoveries; the
// notices of package notify have a third (EnqueueNotice), so that they
// outlive the host that was asked for them.
// Work on one identity runs one job at a time across every host: recovery
// takes the identity's advisory lock (Lock) around each reset.
package outbox

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
)

// Queues: recoveries cost Kratos admin calls and a reset; every other mail
// (verification and login codes) is one SMTP send and must not wait for
// them; a notice may wait seconds for Kratos to store a password, so it
// must not hold a worker a login code needs.
const (
	QueueRecovery = "recovery"
	QueueMail     = "mail"
	QueueNotice   = "notice"
)

// noticeWorkers bounds the notices tried at once on a host, as the
// notifier bounds its sends in memory.
const noticeWorkers = 2

// Queues names the outbox's queues.
func Queues() []string { return []string{QueueRecovery, QueueMail, QueueNotice} }

// holdFor is how long a held recovery waits before it is looked at again;
// a wiring check takes a few seconds.
const holdFor = time.Second

// jobKind names the one kind of job.
const jobKind = "courier_message"

// sealContext binds a sealed message to its use, so a sealed value from
// metadata_admin can never be replayed as a job.
const sealContext = "outbox message v1"

// Deliverer delivers one message (package courier).
type Deliverer interface {
	Deliver(ctx context.Context, cfg *config.Config, msg courier.Message) (courier.Answer, error)
}

// Observer counts what happens to jobs (package metrics).
type Observer interface {
	Job(queue, result string)
}

// args are a job's arguments as stored in river_job.args: nothing in them
// is a secret but Sealed, which no one can open without secrets.cipher.
type args struct {
	// Key is the message's digest under secrets.cipher: River's unique
	// key, so Kratos's retry of a message already taken inserts nothing.
	Key string `json:"key" river:"unique"`
	// Sealed is the courier.Message, JSON, sealed with secrets.cipher.
	Sealed string `json:"sealed"`
	// TemplateType and IdentityID are for operators (gateway queue list).
	TemplateType string `json:"template_type"`
	IdentityID   string `json:"identity_id,omitempty"`
}

func (args) Kind() string { return jobKind }

// Options are the queue.* keys an Outbox starts with.
type Options struct {
	// Workers per queue on this host.
	Workers int
	// RecoveryWorkers, when not 0, is the recovery queue's instead.
	RecoveryWorkers int
	// MaxAttempts bounds a job's tries; queue.max_age, read per job,
	// bounds its age. The first limit reached discards it with an audit line.
	MaxAttempts int
	// Retention keeps finished jobs this long, for duplicate detection
	// and operators; then River deletes them.
	Retention time.Duration
	// JobTimeout bounds one delivery; a job left running by a host that
	// died is run again after twice this.
	JobTimeout time.Duration
}

// Outbox is the queue of one host. It is safe for concurrent use.
type Outbox struct {
	pool    *pgxpool.Pool
	client  *river.Client[pgx.Tx]
	config  func() *config.Config
	log     *slog.Logger
	observe Observer
	deliver Deliverer
	holding func() bool
	notices Noticer
	opts    Options
}

// ErrSchema is returned by Open when the database's River schema is not
// the one this binary knows: missing (run `gateway queue migrate`) or newer.
var ErrSchema = errors.New("outbox schema")

// Open connects to dsn and checks the schema; Start starts the workers.
// Enqueue works from Open on. The error never holds the DSN, which may
// carry a password.
func Open(ctx context.Context, dsn string, opts Options, log *slog.Logger) (*Outbox, error) {
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the DSN.
		return nil, errors.New("queue.postgres_dsn does not parse as a PostgreSQL URL or key=value DSN")
	}
	// Every worker may hold a connection for its identity's lock and River
	// needs a few of its own.
	poolCfg.MaxConns = int32(max(2*opts.Workers+8, 16))
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the queue's PostgreSQL: %s", pgProblem(err))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the queue's PostgreSQL (%s): %s; check queue.postgres_dsn and that the server is up",
			poolCfg.ConnConfig.Host, pgProblem(err))
	}
	if err := checkSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	o := &Outbox{pool: pool, log: log, opts: opts}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &worker{o: o}); err != nil {
		pool.Close()
		return nil, fmt.Errorf("register the outbox worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &noticeWorker{o: o}); err != nil {
		pool.Close()
		return nil, fmt.Errorf("register the notice worker: %w", err)
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues: map[string]river.QueueConfig{
			QueueRecovery: {MaxWorkers: cmp.Or(opts.RecoveryWorkers, opts.Workers)},
			QueueMail:     {MaxWorkers: opts.Workers},
			QueueNotice:   {MaxWorkers: min(opts.Workers, noticeWorkers)},
		},
		Workers:                     workers,
		MaxAttempts:                 opts.MaxAttempts,
		CompletedJobRetentionPeriod: opts.Retention,
		CancelledJobRetentionPeriod: opts.Retention,
		// A discarded job is kept longer: an operator may retry it.
		DiscardedJobRetentionPeriod: max(opts.Retention, 7*24*time.Hour),
		RetryPolicy:                 retryPolicy{},
		// A freshly inserted job starts within milliseconds; River's
		// defaults let one inserted late in a burst wait up to a second.
		FetchCooldown:        10 * time.Millisecond,
		FetchPollInterval:    200 * time.Millisecond,
		JobTimeout:           opts.JobTimeout,
		RescueStuckJobsAfter: 2 * opts.JobTimeout,
		Logger:               log.With("component", "river"),
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("set up the outbox's River client: %w", err)
	}
	o.client = client
	return o, nil
}

// Deps are what the workers and Enqueue work with.
type Deps struct {
	// Config is the config in effect: secrets.cipher seals and opens the
	// messages, queue.max_age bounds the retries.
	Config   func() *config.Config
	Deliver  Deliverer
	Observer Observer
	// Holding, when set and true, holds recoveries back (snoozed, no try
	// used): this host's first check of Kratos's wiring is still running,
	// and without it a recovery would go out as Kratos's own message
	// although another host, or this one a moment later, could send the
	// temporary password (wiring.Status.Checking).
	Holding func() bool
	// Notices tries the notices stored with EnqueueNotice; nil leaves
	// them to a host that has it.
	Notices Noticer
}

// Start starts the workers. Call it once, before the first Enqueue.
func (o *Outbox) Start(ctx context.Context, d Deps) error {
	o.config, o.deliver, o.observe, o.holding, o.notices = d.Config, d.Deliver, d.Observer, d.Holding, d.Notices
	return o.client.Start(ctx)
}

// Stop waits for the running jobs until ctx ends, then cancels them (a
// cancelled job goes back to the queue untouched), and closes the
// connections.
func (o *Outbox) Stop(ctx context.Context) error {
	err := o.client.Stop(ctx)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = o.client.StopAndCancel(cctx)
		cancel()
	}
	o.pool.Close()
	return err
}

// Enqueue stores msg as a job in one transaction and returns the answer
// for Kratos: queued, or duplicate when the same message was taken before.
func (o *Outbox) Enqueue(ctx context.Context, msg courier.Message) (courier.Answer, error) {
	cfg := o.config()
	if cfg.Keyring == nil {
		return courier.Answer{}, errors.New("no secrets.cipher to seal the message with")
	}
	plain, err := json.Marshal(msg)
	if err != nil {
		return courier.Answer{}, fmt.Errorf("encode the message: %w", err)
	}
	sealed, err := cfg.Keyring.Seal(plain, sealContext)
	if err != nil {
		return courier.Answer{}, fmt.Errorf("seal the message: %w", err)
	}
	a := args{Key: uniqueKey(cfg, msg), Sealed: sealed, TemplateType: msg.TemplateType, IdentityID: msg.IdentityID}
	queue := QueueMail
	if courier.IsRecovery(msg.TemplateType) {
		queue = QueueRecovery
	}
	tx, err := o.pool.Begin(ctx)
	if err != nil {
		return courier.Answer{}, fmt.Errorf("store the message: %s; Kratos keeps it and retries", pgProblem(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	res, err := o.client.InsertTx(ctx, tx, a, &river.InsertOpts{Queue: queue, UniqueOpts: river.UniqueOpts{ByArgs: true}})
	if err != nil {
		return courier.Answer{}, fmt.Errorf("store the message: %s; Kratos keeps it and retries", pgProblem(err))
	}
	if err := tx.Commit(ctx); err != nil {
		return courier.Answer{}, fmt.Errorf("store the message: %s; Kratos keeps it and retries", pgProblem(err))
	}
	log := o.log.With("event", "queued", "job_id", res.Job.ID, "queue", queue, "template_type", msg.TemplateType)
	if msg.IdentityID != "" {
		log = log.With("identity_id", msg.IdentityID)
	}
	if res.UniqueSkippedAsDuplicate {
		log.Info("courier message already queued; nothing added")
		o.observe.Job(queue, "duplicate")
		return courier.Answer{Status: "duplicate", Delivery: "queued", Job: res.Job.ID}, nil
	}
	log.Info("courier message queued")
	o.observe.Job(queue, "queued")
	return courier.Answer{Status: "queued", Delivery: "queued", Job: res.Job.ID}, nil
}

// uniqueKey is a digest of msg under secrets.cipher: Kratos's messages have
// no id, and a recovery code has only a million values, so an unkeyed
// digest in river_job would give it away.
func uniqueKey(cfg *config.Config, msg courier.Message) string {
	h := sha256.New()
	for _, part := range []string{msg.TemplateType, msg.Recipient, msg.Subject, msg.Body, msg.HTMLBody,
		msg.IdentityID, msg.RecoveryCode, msg.RecoveryURL} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	return cfg.Keyring.MessageKey("outbox", string(h.Sum(nil)))
}

// Lock takes the identity's lock across every host sharing the database:
// a transaction holding pg_advisory_xact_lock, so a crashed host's lock
// ends with its connection. It waits until ctx ends.
func (o *Outbox) Lock(ctx context.Context, identityID string) (unlock func(), err error) {
	tx, err := o.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("take the identity's lock: %s", pgProblem(err))
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(identityID)); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("take the identity's lock: %s", pgProblem(err))
	}
	return func() { _ = tx.Rollback(context.Background()) }, nil
}

// lockKey is the identity's advisory lock key: 64 bits of a namespaced
// digest, so no other application's keys collide by accident.
func lockKey(identityID string) int64 {
	sum := sha256.Sum256([]byte("kratos-email-gateway identity\x00" + identityID))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// Ping reports whether the queue's database answers: without it /courier
// cannot take a message.
func (o *Outbox) Ping(ctx context.Context) error {
	if err := o.pool.Ping(ctx); err != nil {
		return fmt.Errorf("the queue's PostgreSQL: %s", pgProblem(err))
	}
	return nil
}

// Backlog reports a problem while a message taken more than maxAge ago is
// still not delivered: waiting for a worker, or for its next try after a
// failure. Its age runs from when it was taken, since every retry moves its
// scheduled time. Kratos's messages only: a notice retried for one user's
// full mailbox says nothing of the courier path.
func (o *Outbox) Backlog(ctx context.Context, maxAge time.Duration) error {
	var oldest *time.Time
	err := o.pool.QueryRow(ctx,
		`SELECT min(created_at) FROM river_job WHERE kind = $1 AND state IN ('available', 'retryable', 'scheduled')`, jobKind).Scan(&oldest)
	if err != nil {
		return fmt.Errorf("the queue's PostgreSQL: %s", pgProblem(err))
	}
	if oldest != nil {
		if age := time.Since(*oldest); age > maxAge {
			return fmt.Errorf("a message taken %s ago is not delivered yet, longer than queue.ready_max_age (%s): check the SMTP server and Kratos, and `gateway queue list`",
				age.Round(time.Second), maxAge)
		}
	}
	return nil
}

// worker delivers one job.
type worker struct {
	river.WorkerDefaults[args]
	o *Outbox
}

func (w *worker) Work(ctx context.Context, job *river.Job[args]) error {
	o := w.o
	log := o.log.With("job_id", job.ID, "queue", job.Queue, "attempt", job.Attempt, "template_type", job.Args.TemplateType)
	if job.Args.IdentityID != "" {
		log = log.With("identity_id", job.Args.IdentityID)
	}
	if job.Queue == QueueRecovery && o.holding != nil && o.holding() {
		log.Info("recovery held back until this host's wiring check ends", "event", "job_held")
		return river.JobSnooze(holdFor)
	}
	cfg := o.config()
	plain, err := openSealed(cfg, job.Args.Sealed)
	if err != nil {
		log.Error("job discarded: its message opens with no key of secrets.cipher", "audit", true, "event", "job_discarded",
			"reason", "unsealable")
		o.observe.Job(job.Queue, "discarded")
		return river.JobCancel(fmt.Errorf("job %d: %w", job.ID, err))
	}
	var msg courier.Message
	if err := json.Unmarshal(plain, &msg); err != nil {
		log.Error("job discarded: its message does not decode", "audit", true, "event", "job_discarded", "reason", "undecodable")
		o.observe.Job(job.Queue, "discarded")
		return river.JobCancel(fmt.Errorf("job %d: the message does not decode", job.ID))
	}
	answer, err := o.deliver.Deliver(ctx, cfg, msg)
	if err == nil {
		done(ctx, o, log.With("status", answer.Status, "delivery", answer.Delivery), job)
		return nil
	}
	if ctx.Err() != nil {
		// The host is stopping, or an operator discarded the job: River
		// puts it back in the queue or marks it cancelled.
		log.Info("job stopped before its delivery ended", "event", "job_stopped", "error", err.Error())
		return err
	}
	status := courier.Status(err)
	age := time.Since(job.CreatedAt)
	switch {
	case status < 500:
		// What Kratos would have been answered 4xx: a retry repeats it.
		log.Error("job discarded: the message cannot be delivered", "audit", true, "event", "job_discarded",
			"reason", "final", "status", status, "error", err.Error())
	case job.Attempt >= job.MaxAttempts:
		log.Error("job discarded: queue.max_attempts spent", "audit", true, "event", "job_discarded",
			"reason", "max_attempts", "error", err.Error())
	case age >= cfg.Queue.MaxAge:
		log.Error("job discarded: older than queue.max_age", "audit", true, "event", "job_discarded",
			"reason", "max_age", "age", age.Round(time.Second).String(), "error", err.Error())
	default:
		log.Warn("job failed; retried later", "event", "job_retry", "status", status, "error", err.Error())
		o.observe.Job(job.Queue, "retried")
		return err
	}
	o.observe.Job(job.Queue, "discarded")
	return river.JobCancel(err)
}

// done marks job completed at once, logs and counts it. Completed now, not
// by River's batch completer a little later: a host that dies between the
// mail and the mark would have the job run, and the mail sent, again.
func done[T river.JobArgs](ctx context.Context, o *Outbox, log *slog.Logger, job *river.Job[T]) {
	if err := complete(ctx, o.pool, job); err != nil {
		log.Warn("job done but not marked yet; River marks it", "error", err.Error())
	}
	log.Info("job done", "event", "job_done")
	o.observe.Job(job.Queue, "done")
}

// complete marks job completed in a transaction of its own.
func complete[T river.JobArgs](ctx context.Context, pool *pgxpool.Pool, job *river.Job[T]) error {
	ctx = context.WithoutCancel(ctx)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func openSealed(cfg *config.Config, sealed string) ([]byte, error) {
	if cfg.Keyring == nil {
		return nil, errors.New("no secrets.cipher")
	}
	return cfg.Keyring.Open(sealed, sealContext)
}

// retryPolicy doubles the wait from 1 s up to 10 minutes, so a message
// waits at most 10 minutes past the end of an SMTP outage; queue.max_age,
// not the attempts, then bounds how long one is retried.
type retryPolicy struct{}

func (retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	n := len(job.Errors)
	wait := 10 * time.Minute
	if n < 10 {
		wait = min(time.Duration(1<<n)*time.Second, wait)
	}
	return time.Now().Add(wait)
}

// Migrate brings the database's River schema up to this binary's and
// returns the versions it applied.
func Migrate(ctx context.Context, dsn string, log *slog.Logger) ([]int, error) {
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN (its password masked).
		return nil, errors.New("queue.postgres_dsn does not parse as a PostgreSQL URL or key=value DSN")
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the queue's PostgreSQL: %s", pgProblem(err))
	}
	defer pool.Close()
	if err := newerSchema(ctx, pool); err != nil {
		return nil, err
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("set up River's migrations: %w", err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("migrate the queue's schema: %s", pgProblem(err))
	}
	var applied []int
	for _, v := range res.Versions {
		applied = append(applied, v.Version)
	}
	return applied, nil
}

// knownVersion is the last River schema version this binary knows.
func knownVersion() int {
	all, _ := rivermigrate.New[pgx.Tx](riverpgxv5.New(nil), nil)
	versions := all.AllVersions()
	return versions[len(versions)-1].Version
}

// appliedVersion is the highest River schema version applied, 0 for none.
func appliedVersion(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('river_migration') IS NOT NULL").Scan(&exists); err != nil {
		return 0, fmt.Errorf("read the queue's schema version: %s", pgProblem(err))
	}
	if !exists {
		return 0, nil
	}
	var v *int
	if err := pool.QueryRow(ctx, "SELECT max(version) FROM river_migration WHERE line = 'main'").Scan(&v); err != nil {
		return 0, fmt.Errorf("read the queue's schema version: %s", pgProblem(err))
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// newerSchema refuses a database a newer River migrated: this binary
// would run against tables it does not know.
func newerSchema(ctx context.Context, pool *pgxpool.Pool) error {
	applied, err := appliedVersion(ctx, pool)
	if err != nil {
		return err
	}
	if known := knownVersion(); applied > known {
		return fmt.Errorf("%w: the database has River schema version %d, newer than this binary's %d: "+
			"run the gateway version that migrated it, or a newer one", ErrSchema, applied, known)
	}
	return nil
}

// checkSchema insists on exactly the schema this binary knows.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if err := newerSchema(ctx, pool); err != nil {
		return err
	}
	applied, err := appliedVersion(ctx, pool)
	if err != nil {
		return err
	}
	if known := knownVersion(); applied < known {
		return fmt.Errorf("%w: the database has River schema version %d, this binary needs %d: "+
			"run `gateway queue migrate --config FILE`, or set queue.migrate: auto", ErrSchema, applied, known)
	}
	return nil
}

// pgProblem describes a PostgreSQL or connection error without the DSN
// (pgx's connect errors can quote host, user and database; never the
// password, but the DSN as a whole stays out of logs).
func pgProblem(err error) string {
	var cause error = err
	for {
		u := errors.Unwrap(cause)
		if u == nil {
			break
		}
		cause = u
	}
	return cause.Error()
}
