package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
)

// noticer records the tries of notices and answers each with step.
type noticer struct {
	mu    sync.Mutex
	tries map[string][]int
	got   []notify.Notice
	step  func(nt notify.Notice, attempt int, reached notify.Reached) (bool, error)
}

func (n *noticer) Attempt(_ context.Context, nt notify.Notice, attempt int, reached notify.Reached) (bool, error) {
	n.mu.Lock()
	if n.tries == nil {
		n.tries = map[string][]int{}
	}
	n.tries[nt.IdentityID] = append(n.tries[nt.IdentityID], attempt)
	n.got = append(n.got, nt)
	n.mu.Unlock()
	return n.step(nt, attempt, reached)
}

func (n *noticer) attempts(id string) []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]int(nil), n.tries[id]...)
}

// A notice is stored as it was asked for, in a queue of its own (a notice
// may wait seconds for Kratos, and must not hold a worker a login code
// needs), and tried by the workers: a sent
// notice's job completes, one that failed and may pass is tried again
// notices.retry_backoff later, one given up is discarded with an audit
// line; operators see them in List.
func TestNoticeJobs(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	n := &noticer{step: func(nt notify.Notice, attempt int, _ notify.Reached) (bool, error) {
		switch nt.IdentityID {
		case "sent":
			return true, nil
		case "flaky":
			if attempt < 3 {
				return false, errors.New("smtp connect: connection refused")
			}
			return true, nil
		default:
			return true, errors.New("render the notice: template.password_changed.subject line 1")
		}
	}}
	cfg := testConfig(t)
	cfg.Notices = config.Notices{MaxAttempts: 5, RetryBackoff: 100 * time.Millisecond}
	h := startWith(t, pgtest.NewDatabase(t), cfg, &deliveries{}, Options{}, true, Deps{Notices: n})
	ctx := context.Background()
	for _, id := range []string{"sent", "flaky", "broken"} {
		nt := notify.Notice{Kind: notify.PasswordChanged, IdentityID: id, At: at, Supersedes: notify.HashDigest("$2a$10$x")}
		if err := h.ob.EnqueueNotice(ctx, nt); err != nil {
			t.Fatalf("enqueue the notice of %s: %v", id, err)
		}
	}
	waitUntil(t, func() bool { return h.jobs.get("notice done") == 2 && h.jobs.get("notice discarded") == 1 }, "two notices done, one discarded")

	if got := n.attempts("flaky"); len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Errorf("tries of the flaky notice = %v, want 1, 2, 3", got)
	}
	if got := n.attempts("broken"); len(got) != 1 {
		t.Errorf("tries of the notice given up = %v, want one", got)
	}
	n.mu.Lock()
	first := n.got[0]
	n.mu.Unlock()
	if first.Kind != notify.PasswordChanged || !first.At.Equal(at) || first.Supersedes != notify.HashDigest("$2a$10$x") {
		t.Errorf("the notice came back as %+v", first)
	}
	if !strings.Contains(h.logs.String(), `"reason":"notice_failed"`) || !strings.Contains(h.logs.String(), `"audit":true`) {
		t.Errorf("no audit line for the discarded notice:\n%s", h.logs)
	}

	jobs, err := h.ob.List(ctx, Filter{States: []string{StateFailed}})
	if err != nil || len(jobs) != 1 || jobs[0].Queue != QueueNotice || jobs[0].TemplateType != "notice:password_changed" || jobs[0].IdentityID != "broken" ||
		!strings.Contains(jobs[0].LastError, "template.password_changed.subject") {
		t.Fatalf("failed jobs = %+v, %v; want the broken notice with its error", jobs, err)
	}
	// An operator retries it; it is tried once more.
	if _, err := h.ob.Retry(ctx, jobs[0].ID); err != nil {
		t.Fatalf("retry the notice's job: %v", err)
	}
	waitUntil(t, func() bool { return len(n.attempts("broken")) == 2 }, "the retried notice tried again")
}

// The retries of a notice are spaced as notices.retry_backoff says, read
// when the try failed.
func TestNoticeRetryWait(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Notices: config.Notices{RetryBackoff: 30 * time.Second}}
	w := &noticeWorker{o: &Outbox{config: func() *config.Config { return cfg }}}
	for attempt, want := range map[int]time.Duration{1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute} {
		job := &river.Job[noticeArgs]{JobRow: &rivertype.JobRow{Attempt: attempt}}
		got := time.Until(w.NextRetry(job))
		if got < want-time.Second || got > want {
			t.Errorf("wait after try %d = %s, want %s", attempt, got, want)
		}
	}
}

// The recipients a notice's try got through to stay with its job, so the
// next try, on whichever host, mails only the others; the job holds keyed
// digests of them, never an address.
func TestNoticeRetryMailsOnlyWhoDidNotGetIt(t *testing.T) {
	t.Parallel()
	type view struct{ home, work bool }
	var seen []view
	var n *noticer
	n = &noticer{step: func(_ notify.Notice, attempt int, reached notify.Reached) (bool, error) {
		n.mu.Lock()
		seen = append(seen, view{reached.Has("alice@example.com"), reached.Has("alice@work.example")})
		n.mu.Unlock()
		switch attempt {
		case 1:
			reached.Add("Alice@Example.com")
			return false, errors.New("send the reset_void notice: 452 4.2.2 mailbox full")
		case 2:
			// This try reaches nobody new: the record is kept as it was.
			return false, errors.New("read the identity's recovery addresses from Kratos: connection refused")
		case 3:
			// Given up: what it reached is recorded for an operator's retry.
			reached.Add("alice@work.example")
			return true, errors.New("send the reset_void notice: 550 5.7.1 refused")
		default:
			reached.Add("alice@old.example")
			return true, nil
		}
	}}
	cfg := testConfig(t)
	cfg.Notices = config.Notices{MaxAttempts: 5, RetryBackoff: 50 * time.Millisecond}
	dsn := pgtest.NewDatabase(t)
	h := startWith(t, dsn, cfg, &deliveries{}, Options{}, true, Deps{Notices: n})
	ctx := context.Background()
	if err := h.ob.EnqueueNotice(ctx, notify.Notice{Kind: notify.ResetVoid, IdentityID: "id-alice", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var failed []Job
	waitUntil(t, func() bool {
		var err error
		failed, err = h.ob.List(ctx, Filter{States: []string{StateFailed}})
		return err == nil && len(failed) == 1
	}, "the notice given up")
	if _, err := h.ob.Retry(ctx, failed[0].ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return h.jobs.get("notice done") == 1 }, "the retried notice sent")

	n.mu.Lock()
	got := append([]view(nil), seen...)
	n.mu.Unlock()
	want := []view{{false, false}, {true, false}, {true, false}, {true, true}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("what each try knew was reached = %+v, want %+v", got, want)
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var metadata string
	if err := conn.QueryRow(ctx, "SELECT metadata::text FROM river_job WHERE queue = $1", QueueNotice).Scan(&metadata); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metadata, reachedKey) || strings.Contains(strings.ToLower(metadata), "alice") {
		t.Errorf("the job's metadata = %s, want the reached recipients as digests only", metadata)
	}
}

// What a try recorded is read under every key of secrets.cipher, so a key
// rotation between two tries mails nobody twice; it is bound to the
// identity, and a record that cannot be read counts as empty (someone may
// get the notice twice, nobody is left out).
func TestReachedRecord(t *testing.T) {
	t.Parallel()
	oldKeys := testConfig(t).Keyring
	rotated := testConfig(t, "fedcba9876543210fedcba9876543210-rotated", testCipher).Keyring

	r := readReached(nil, oldKeys, "id-alice")
	r.Add("Alice@Example.com")
	raw, err := json.Marshal(map[string]any{reachedKey: r.digests, "other": 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		metadata []byte
		keys     *sealing.Keyring
		identity string
		want     bool
	}{
		{"same key", raw, oldKeys, "id-alice", true},
		{"after a key rotation", raw, rotated, "id-alice", true},
		{"another identity with the same address", raw, oldKeys, "id-bob", false},
		{"a key no longer configured", raw, testConfig(t, "fedcba9876543210fedcba9876543210-rotated").Keyring, "id-alice", false},
		{"unreadable metadata", []byte(`{"notice_reached": 7}`), oldKeys, "id-alice", false},
		{"no secrets.cipher", raw, nil, "id-alice", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := readReached(tt.metadata, tt.keys, tt.identity).Has("alice@example.com"); got != tt.want {
				t.Errorf("Has = %v, want %v", got, tt.want)
			}
		})
	}
}
