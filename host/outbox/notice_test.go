package outbox

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
)

// noticer records the tries of notices and answers each with step.
type noticer struct {
	mu    sync.Mutex
	tries map[string][]int
	got   []notify.Notice
	step  func(nt notify.Notice, attempt int) (bool, error)
}

func (n *noticer) Attempt(_ context.Context, nt notify.Notice, attempt int) (bool, error) {
	n.mu.Lock()
	if n.tries == nil {
		n.tries = map[string][]int{}
	}
	n.tries[nt.IdentityID] = append(n.tries[nt.IdentityID], attempt)
	n.got = append(n.got, nt)
	n.mu.Unlock()
	return n.step(nt, attempt)
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
	n := &noticer{step: func(nt notify.Notice, attempt int) (bool, error) {
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
