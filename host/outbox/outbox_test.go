package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

const testCipher = "0123456789abcdef0123456789abcdef-outbox"

func testConfig(t *testing.T, cipher ...string) *config.Config {
	t.Helper()
	if len(cipher) == 0 {
		cipher = []string{testCipher}
	}
	kr, err := sealing.New(cipher)
	if err != nil {
		t.Fatal(err)
	}
	return &config.Config{Keyring: kr, Queue: config.Queue{MaxAge: time.Hour}}
}

// deliveries records what the workers delivered; fail decides each try's
// error by the message and how often it was tried.
type deliveries struct {
	mu   sync.Mutex
	got  []courier.Message
	fail func(msg courier.Message, try int) error
}

func (d *deliveries) Deliver(_ context.Context, _ *config.Config, msg courier.Message) (courier.Answer, error) {
	d.mu.Lock()
	try := 1
	for _, m := range d.got {
		if m == msg {
			try++
		}
	}
	d.got = append(d.got, msg)
	fail := d.fail
	d.mu.Unlock()
	if fail != nil {
		if err := fail(msg, try); err != nil {
			return courier.Answer{}, err
		}
	}
	return courier.Answer{Status: "sent", Delivery: "as_rendered"}, nil
}

func (d *deliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.got)
}

type jobCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *jobCounts) Job(queue, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[queue+" "+result]++
}

func (c *jobCounts) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

type harness struct {
	ob   *Outbox
	dsn  string
	d    *deliveries
	jobs *jobCounts
	logs *testlog.Buffer
	cfg  *config.Config
}

// start migrates a fresh database and opens an outbox on it; started says
// whether its workers run.
func start(t *testing.T, dsn string, cfg *config.Config, d *deliveries, opts Options, started bool) *harness {
	return startWith(t, dsn, cfg, d, opts, started, Deps{})
}

// startWith is start with extra's Holding and Notices.
func startWith(t *testing.T, dsn string, cfg *config.Config, d *deliveries, opts Options, started bool, extra Deps) *harness {
	t.Helper()
	ctx := context.Background()
	if _, err := Migrate(ctx, dsn, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	h := &harness{dsn: dsn, d: d, jobs: &jobCounts{}, logs: &testlog.Buffer{}, cfg: cfg}
	log := slog.New(slog.NewJSONHandler(h.logs, nil))
	if opts.Workers == 0 {
		opts = Options{Workers: 4, MaxAttempts: 5, Retention: time.Hour}
	}
	if opts.JobTimeout == 0 {
		opts.JobTimeout = time.Minute
	}
	ob, err := Open(ctx, dsn, opts, log)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	h.ob = ob
	deps := Deps{Config: func() *config.Config { return h.cfg }, Deliver: d, Observer: h.jobs, Holding: extra.Holding, Notices: extra.Notices}
	if started {
		if err := ob.Start(ctx, deps); err != nil {
			t.Fatal(err)
		}
	} else {
		// A host whose workers do not run (yet): it only enqueues.
		ob.config, ob.deliver, ob.observe = deps.Config, deps.Deliver, deps.Observer
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ob.Stop(ctx)
	})
	return h
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func recoveryMessage(identity, code string) courier.Message {
	return courier.Message{Recipient: "user@example.org", Subject: "Recover access to your account", Body: "Your code is " + code,
		TemplateType: courier.TemplateRecoveryCodeValid, IdentityID: identity, RecoveryCode: code}
}

// The schema must be this binary's: missing and newer are refused, each
// with what to do; Migrate applies every version once.
func TestSchemaVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	log := slog.New(slog.DiscardHandler)
	_, err := Open(ctx, dsn, Options{Workers: 1, MaxAttempts: 1, Retention: time.Hour}, log)
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "gateway queue migrate") {
		t.Fatalf("open before migrating = %v, want ErrSchema naming gateway queue migrate", err)
	}
	applied, err := Migrate(ctx, dsn, log)
	if err != nil || len(applied) == 0 || applied[len(applied)-1] != knownVersion() {
		t.Fatalf("migrate = %v, %v; want every version up to %d", applied, err, knownVersion())
	}
	if again, err := Migrate(ctx, dsn, log); err != nil || len(again) != 0 {
		t.Errorf("second migrate = %v, %v; want nothing to do", again, err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO river_migration (line, version) VALUES ('main', $1)", knownVersion()+1); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"open": func() error {
			_, err := Open(ctx, dsn, Options{Workers: 1, MaxAttempts: 1, Retention: time.Hour}, log)
			return err
		}(),
		"migrate": func() error { _, err := Migrate(ctx, dsn, log); return err }(),
	} {
		want := fmt.Sprintf("version %d, newer than this binary's %d", knownVersion()+1, knownVersion())
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s on a newer schema = %v, want ErrSchema saying %q", name, err, want)
		}
	}
}

// A message is stored sealed, delivered once, and Kratos's retry of it
// adds nothing; a recovery and a login code go to their own queues.
func TestEnqueueDeliverOnceSealed(t *testing.T) {
	t.Parallel()
	h := start(t, pgtest.NewDatabase(t), testConfig(t), &deliveries{}, Options{}, true)
	ctx := context.Background()
	msg := recoveryMessage("4d1c0d5e-0000-4000-8000-000000000001", "740192")
	login := courier.Message{Recipient: "user@example.org", Subject: "Login code", Body: "Your login code is 993311", TemplateType: "login_code_valid"}
	var job int64
	for i, want := range []string{"queued", "duplicate"} {
		ans, err := h.ob.Enqueue(ctx, msg)
		if err != nil || ans.Status != want {
			t.Fatalf("enqueue %d = %+v, %v; want %s", i+1, ans, err, want)
		}
		// The answer names the job holding the message, the copy's too.
		if ans.Job == 0 || (job != 0 && ans.Job != job) {
			t.Fatalf("enqueue %d names job %d, want the one job (first answer: %d)", i+1, ans.Job, job)
		}
		job = ans.Job
	}
	if ans, err := h.ob.Enqueue(ctx, login); err != nil || ans.Status != "queued" {
		t.Fatalf("enqueue login code = %+v, %v", ans, err)
	}
	waitUntil(t, func() bool { return h.d.count() == 2 }, "two deliveries")
	waitUntil(t, func() bool { return h.jobs.get("recovery done") == 1 && h.jobs.get("mail done") == 1 }, "both jobs done")
	// The recovery, done by now, still blocks Kratos's late retry.
	if ans, err := h.ob.Enqueue(ctx, msg); err != nil || ans.Status != "duplicate" {
		t.Errorf("enqueue after delivery = %+v, %v; want duplicate", ans, err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := h.d.count(); n != 2 {
		t.Errorf("deliveries = %d, want 2", n)
	}

	conn, err := pgx.Connect(ctx, h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored []string
	rows, err := conn.Query(ctx, "SELECT queue || ' ' || args::text FROM river_job ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	stored, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || !strings.HasPrefix(stored[0], "recovery ") || !strings.HasPrefix(stored[1], "mail ") {
		t.Fatalf("jobs %q, want a recovery and a mail job", stored)
	}
	for _, secret := range []string{"740192", "993311", "user@example.org", "Your code"} {
		if strings.Contains(strings.Join(stored, "\n"), secret) {
			t.Errorf("river_job.args holds %q in clear", secret)
		}
	}
}

// A failure a retry may cure is retried until it succeeds; one it cannot
// (what Kratos would have been answered 4xx) is discarded at once with an
// audit line; so is a job once queue.max_attempts is spent, and a job whose
// sealed message no key opens (never a panic).
func TestRetriesAndDiscards(t *testing.T) {
	t.Parallel()
	d := &deliveries{fail: func(msg courier.Message, try int) error {
		switch msg.RecoveryCode {
		case "111111": // SMTP down for two tries
			if try <= 2 {
				return fmt.Errorf("smtp connect: %w", sdk.ErrUnavailable)
			}
		case "222222": // the identity is gone
			return fmt.Errorf("look up identity: %w", kratosadmin.ErrNotFound)
		case "333333": // down for good
			return fmt.Errorf("smtp connect: %w", sdk.ErrUnavailable)
		}
		return nil
	}}
	h := start(t, pgtest.NewDatabase(t), testConfig(t), d, Options{Workers: 4, MaxAttempts: 3, Retention: time.Hour}, true)
	ctx := context.Background()
	for _, code := range []string{"111111", "222222", "333333"} {
		if _, err := h.ob.Enqueue(ctx, recoveryMessage("id-"+code, code)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool {
		return h.jobs.get("recovery done") == 1 && h.jobs.get("recovery discarded") == 2
	}, "one job done after two retries and two discarded")
	if got := h.jobs.get("recovery retried"); got != 4 {
		t.Errorf("retried %d times, want 4 (2 for 111111, 2 for 333333 before its third and last try)", got)
	}
	logs := h.logs.String()
	for _, want := range []string{`"reason":"final"`, `"reason":"max_attempts"`} {
		if !strings.Contains(logs, want) || !strings.Contains(logs, `"event":"job_discarded"`) {
			t.Errorf("no audit line with %s:\n%s", want, logs)
		}
	}

	// A job sealed under a key this host no longer has.
	other := start(t, h.dsn, testConfig(t, "another-key-that-is-long-enough-0123456789"), &deliveries{}, Options{Workers: 1, MaxAttempts: 3, Retention: time.Hour}, false)
	if _, err := other.ob.Enqueue(ctx, recoveryMessage("id-444444", "444444")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return h.jobs.get("recovery discarded") == 3 }, "the unsealable job discarded")
	if !strings.Contains(h.logs.String(), `"reason":"unsealable"`) {
		t.Errorf("no audit line for the unsealable job")
	}
}

// One identity's work runs one at a time across hosts: the lock taken on
// one outbox's database blocks another's until it is released.
func TestLockAcrossHosts(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, dsn, testConfig(t), &deliveries{}, Options{}, false)
	b := start(t, dsn, testConfig(t), &deliveries{}, Options{}, false)
	ctx := context.Background()
	unlock, err := a.ob.Lock(ctx, "identity-1")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := b.ob.Lock(short, "identity-1"); err == nil {
		t.Fatal("the second host took a lock the first one holds")
	}
	other, err := b.ob.Lock(ctx, "identity-2")
	if err != nil {
		t.Fatalf("another identity's lock: %v", err)
	}
	other()
	got := make(chan error, 1)
	go func() {
		unlockB, err := b.ob.Lock(ctx, "identity-1")
		if err == nil {
			unlockB()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("lock returned (%v) while the first host held it", err)
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the lock was not handed over after the unlock")
	}
}

// The backlog is reported while a message taken longer ago than the limit
// is not delivered, also when a retry moved its next try to now.
func TestBacklog(t *testing.T) {
	t.Parallel()
	h := start(t, pgtest.NewDatabase(t), testConfig(t), &deliveries{}, Options{}, false)
	ctx := context.Background()
	if err := h.ob.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := h.ob.Backlog(ctx, time.Minute); err != nil {
		t.Fatalf("empty queue: %v", err)
	}
	conn, err := pgx.Connect(ctx, h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// A notice retried for 10 minutes (one user's mailbox is full) is not
	// a backlog of Kratos's messages.
	if err := h.ob.EnqueueNotice(ctx, notify.Notice{Kind: notify.ResetVoid, IdentityID: "id-1", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "UPDATE river_job SET state = 'retryable', created_at = now() - interval '10 minutes', scheduled_at = now()"); err != nil {
		t.Fatal(err)
	}
	if err := h.ob.Backlog(ctx, time.Minute); err != nil {
		t.Errorf("an old notice: %v, want no backlog", err)
	}
	if _, err := h.ob.Enqueue(ctx, recoveryMessage("id-1", "123456")); err != nil {
		t.Fatal(err)
	}
	if err := h.ob.Backlog(ctx, time.Minute); err != nil {
		t.Errorf("a fresh message: %v", err)
	}
	if _, err := conn.Exec(ctx, "UPDATE river_job SET state = 'retryable', created_at = now() - interval '10 minutes', scheduled_at = now()"); err != nil {
		t.Fatal(err)
	}
	if err := h.ob.Backlog(ctx, time.Minute); err == nil || !strings.Contains(err.Error(), "queue.ready_max_age") {
		t.Errorf("a message taken 10 minutes ago and retried now = %v, want an error naming queue.ready_max_age", err)
	}
}

// With PostgreSQL down, Enqueue fails (Kratos keeps the message), and once
// it is back the same message is taken and delivered.
func TestEnqueueWhileDatabaseDown(t *testing.T) {
	t.Parallel()
	pg := pgtest.NewCluster(t)
	h := start(t, pg.NewDatabase(t), testConfig(t), &deliveries{}, Options{}, true)
	ctx := context.Background()
	pg.Stop(t)
	msg := recoveryMessage("id-1", "654321")
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := h.ob.Enqueue(tctx, msg); err == nil || !strings.Contains(err.Error(), "Kratos keeps it and retries") {
		t.Fatalf("enqueue with PostgreSQL down = %v, want an error", err)
	}
	pg.Start(t)
	waitUntil(t, func() bool {
		ans, err := h.ob.Enqueue(ctx, msg)
		return err == nil && ans.Status == "queued"
	}, "the message taken once PostgreSQL is back")
	waitUntil(t, func() bool { return h.d.count() == 1 }, "the delivery")
}

// While this host's first wiring check runs, recoveries wait (snoozed,
// no try used) instead of going out as Kratos's own message; other mail
// goes out at once.
func TestRecoveriesHeldWhileWiringChecks(t *testing.T) {
	t.Parallel()
	var checking atomic.Bool
	checking.Store(true)
	d := &deliveries{}
	h := startWith(t, pgtest.NewDatabase(t), testConfig(t), d, Options{Workers: 2, MaxAttempts: 1, Retention: time.Hour, JobTimeout: time.Minute}, true, Deps{Holding: checking.Load})
	ctx := context.Background()
	if _, err := h.ob.Enqueue(ctx, recoveryMessage("id-1", "123123")); err != nil {
		t.Fatal(err)
	}
	login := courier.Message{Recipient: "user@example.org", Subject: "Login code", Body: "Your login code is 456456", TemplateType: "login_code_valid"}
	if _, err := h.ob.Enqueue(ctx, login); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return h.jobs.get("mail done") == 1 }, "the login code delivered")
	waitUntil(t, func() bool { return strings.Contains(h.logs.String(), `"event":"job_held"`) }, "the recovery held")
	if n := d.count(); n != 1 {
		t.Fatalf("deliveries while the wiring check runs = %d, want only the login code", n)
	}
	checking.Store(false)
	// MaxAttempts 1: a held recovery used no try, or it would be discarded.
	waitUntil(t, func() bool { return h.jobs.get("recovery done") == 1 }, "the recovery delivered after the check")
}

// queue.recovery_workers bounds the recovery queue alone: with 1 recovery
// worker and 4 per queue, recoveries run one at a time while login codes
// run side by side.
func TestRecoveryWorkers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	running, most := map[string]int{}, map[string]int{}
	bothCodes := make(chan struct{})
	d := &deliveries{fail: func(msg courier.Message, _ int) error {
		kind := msg.TemplateType
		mu.Lock()
		running[kind]++
		most[kind] = max(most[kind], running[kind])
		if kind == "login_code_valid" && running[kind] == 2 {
			close(bothCodes)
		}
		mu.Unlock()
		if kind == "login_code_valid" {
			// Two codes must be delivered at once for either to end.
			select {
			case <-bothCodes:
			case <-time.After(10 * time.Second):
			}
		} else {
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		running[kind]--
		mu.Unlock()
		return nil
	}}
	h := start(t, pgtest.NewDatabase(t), testConfig(t), d, Options{Workers: 4, RecoveryWorkers: 1, MaxAttempts: 5, Retention: time.Hour}, true)
	ctx := context.Background()
	for i := range 4 {
		if _, err := h.ob.Enqueue(ctx, recoveryMessage(fmt.Sprintf("4d1c0d5e-0000-4000-8000-00000000001%d", i), "74019"+fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		code := courier.Message{Recipient: fmt.Sprintf("user%d@example.org", i), Subject: "Login code", Body: "Your login code is 99331" + fmt.Sprint(i), TemplateType: "login_code_valid"}
		if _, err := h.ob.Enqueue(ctx, code); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool { return h.jobs.get("recovery done") == 4 && h.jobs.get("mail done") == 2 }, "every job done")
	mu.Lock()
	defer mu.Unlock()
	if most[courier.TemplateRecoveryCodeValid] != 1 || most["login_code_valid"] != 2 {
		t.Errorf("at most %d recoveries and %d login codes at once, want 1 and 2", most[courier.TemplateRecoveryCodeValid], most["login_code_valid"])
	}
}
