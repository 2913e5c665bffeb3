package outbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
)

// stateSQL puts a job in a state as River would have left it.
var stateSQL = map[string]string{
	"available": ``,
	"scheduled": `state = 'scheduled', scheduled_at = now() + interval '1 hour'`,
	"retryable": `state = 'retryable', attempt = 1, attempted_at = now(), scheduled_at = now() + interval '1 hour',
		errors = ARRAY['{"at":"2026-01-01T00:00:00Z","attempt":1,"error":"smtp connect: unavailable"}'::jsonb]`,
	"running":   `state = 'running', attempt = 1, attempted_at = now()`,
	"completed": `state = 'completed', attempt = 1, attempted_at = now(), finalized_at = now()`,
	"cancelled": `state = 'cancelled', attempt = 1, attempted_at = now(), finalized_at = now(),
		errors = ARRAY['{"at":"2026-01-01T00:00:00Z","attempt":1,"error":"look up identity: not found"}'::jsonb]`,
	"discarded": `state = 'discarded', attempt = max_attempts, attempted_at = now(), finalized_at = now(),
		errors = ARRAY['{"at":"2026-01-01T00:00:00Z","attempt":5,"error":"panic: boom"}'::jsonb]`,
}

// jobsIn enqueues one recovery message per state (in the order given)
// on an outbox whose workers do not run, and puts each in its state.
func jobsIn(t *testing.T, h *harness, states ...string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ids := map[string]int64{}
	for i, state := range states {
		msg := recoveryMessage(fmt.Sprintf("identity-%s", state), fmt.Sprintf("%06d", i))
		if _, err := h.ob.Enqueue(ctx, msg); err != nil {
			t.Fatal(err)
		}
		var id int64
		if err := conn.QueryRow(ctx, "SELECT max(id) FROM river_job").Scan(&id); err != nil {
			t.Fatal(err)
		}
		if set := stateSQL[state]; set != "" {
			if _, err := conn.Exec(ctx, "UPDATE river_job SET "+set+" WHERE id = $1", id); err != nil {
				t.Fatalf("put job %d in state %s: %v", id, state, err)
			}
		}
		ids[state] = id
	}
	return ids
}

// List shows every job newest first, never its sealed message, and
// filters by state ("failed": cancelled and discarded), queue and limit.
func TestList(t *testing.T) {
	t.Parallel()
	h := start(t, pgtest.NewDatabase(t), testConfig(t), &deliveries{}, Options{}, false)
	ctx := context.Background()
	ids := jobsIn(t, h, "available", "retryable", "completed", "cancelled", "discarded")
	login := courier.Message{Recipient: "user@example.org", Subject: "Login code", Body: "Your login code is 993311", TemplateType: "login_code_valid"}
	if _, err := h.ob.Enqueue(ctx, login); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		filter  Filter
		want    []string // the states of the jobs listed, in order; "mail" for the login code
		wantErr string
	}{
		{name: "all, newest first", filter: Filter{}, want: []string{"mail", "discarded", "cancelled", "completed", "retryable", "available"}},
		{name: "one state", filter: Filter{States: []string{"cancelled"}}, want: []string{"cancelled"}},
		{name: "failed is cancelled and discarded", filter: Filter{States: []string{StateFailed}}, want: []string{"discarded", "cancelled"}},
		{name: "waiting", filter: Filter{States: []string{"available", "retryable"}}, want: []string{"mail", "retryable", "available"}},
		{name: "queue", filter: Filter{Queue: QueueMail}, want: []string{"mail"}},
		{name: "queue and state", filter: Filter{Queue: QueueRecovery, States: []string{"available"}}, want: []string{"available"}},
		{name: "limit", filter: Filter{Limit: 2}, want: []string{"mail", "discarded"}},
		{name: "unknown state", filter: Filter{States: []string{"dead"}}, wantErr: `no job state "dead"`},
		{name: "unknown queue", filter: Filter{Queue: "default"}, wantErr: `no queue "default"`},
		{name: "limit too large", filter: Filter{Limit: MaxListLimit + 1}, wantErr: "outside 1..10000"},
		{name: "negative limit", filter: Filter{Limit: -1}, wantErr: "outside 1..10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := h.ob.List(ctx, tt.filter)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("List = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, j := range jobs {
				if j.Queue == QueueMail {
					got = append(got, "mail")
				} else {
					got = append(got, j.State)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("listed %v, want %v", got, tt.want)
			}
		})
	}

	jobs, err := h.ob.List(ctx, Filter{States: []string{"cancelled"}})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("List = %v, %v", jobs, err)
	}
	j := jobs[0]
	if j.ID != ids["cancelled"] || j.Queue != QueueRecovery || j.TemplateType != courier.TemplateRecoveryCodeValid ||
		j.IdentityID != "identity-cancelled" || j.Attempt != 1 || j.MaxAttempts != 5 || j.LastError != "look up identity: not found" ||
		j.CreatedAt.IsZero() || j.ScheduledAt.IsZero() || j.FinalizedAt.IsZero() || j.ByOperator {
		t.Errorf("the cancelled job listed as %+v", j)
	}
	conn, err := pgx.Connect(ctx, h.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var sealed string
	if err := conn.QueryRow(ctx, "SELECT args->>'sealed' FROM river_job WHERE id = $1", j.ID).Scan(&sealed); err != nil || len(sealed) < 20 {
		t.Fatalf("sealed = %q, %v", sealed, err)
	}
	if strings.Contains(fmt.Sprintf("%+v", jobs), sealed[:20]) {
		t.Errorf("List shows the sealed message: %+v", jobs)
	}
}

// Retry makes a job that did not deliver run now, and refuses one running
// or delivered; Discard cancels one that has not run or is running, leaves
// one already final as it is, and refuses one delivered. Each change
// writes an audit line naming the job.
func TestRetryAndDiscard(t *testing.T) {
	t.Parallel()
	states := []string{"available", "scheduled", "retryable", "running", "completed", "cancelled", "discarded"}
	tests := []struct {
		state string
		// want is the state after, or the error's text.
		retry, discard    string
		retryErr, discErr bool
		discardAudit      bool
		retryMoreAttempts bool // the attempts were spent: the retry adds one
		discardByOperator bool
	}{
		{state: "available", retry: "available", discard: "cancelled", discardAudit: true, discardByOperator: true},
		{state: "scheduled", retry: "available", discard: "cancelled", discardAudit: true, discardByOperator: true},
		{state: "retryable", retry: "available", discard: "cancelled", discardAudit: true, discardByOperator: true},
		{state: "running", retry: "running: it is being delivered now, and is retried by itself if that fails", retryErr: true, discard: "running", discardAudit: true, discardByOperator: true},
		{state: "completed", retry: "completed: its mail was delivered, and a retry would send it again", retryErr: true,
			discard: "completed: its mail was delivered", discErr: true},
		{state: "cancelled", retry: "available", discard: "cancelled"},
		{state: "discarded", retry: "available", discard: "discarded", retryMoreAttempts: true},
	}
	for _, op := range []string{"retry", "discard"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			h := start(t, pgtest.NewDatabase(t), testConfig(t), &deliveries{}, Options{}, false)
			ctx := context.Background()
			ids := jobsIn(t, h, states...)
			for _, tt := range tests {
				id := ids[tt.state]
				var ch Change
				var err error
				want, wantErr := tt.retry, tt.retryErr
				if op == "retry" {
					ch, err = h.ob.Retry(ctx, id)
				} else {
					ch, err = h.ob.Discard(ctx, id)
					want, wantErr = tt.discard, tt.discErr
				}
				if wantErr {
					want = fmt.Sprintf("job %d is %s", id, want)
					if !errors.Is(err, ErrJobState) || err.Error() != want {
						t.Errorf("%s of a %s job = %v, want %q", op, tt.state, err, want)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s of a %s job: %v", op, tt.state, err)
					continue
				}
				if ch.Previous != tt.state || ch.Job.State != want || ch.Job.ID != id {
					t.Errorf("%s of a %s job: %s → %s (job %d), want %s → %s (job %d)", op, tt.state, ch.Previous, ch.Job.State, ch.Job.ID, tt.state, want, id)
				}
				if op == "retry" {
					if !ch.Job.ScheduledAt.Before(time.Now().Add(time.Second)) {
						t.Errorf("retry of a %s job: scheduled at %s, want now", tt.state, ch.Job.ScheduledAt)
					}
					if wantMax := 5 + map[bool]int{true: 1}[tt.retryMoreAttempts]; ch.Job.MaxAttempts != wantMax {
						t.Errorf("retry of a %s job: max attempts %d, want %d", tt.state, ch.Job.MaxAttempts, wantMax)
					}
				} else if ch.Job.ByOperator != tt.discardByOperator {
					t.Errorf("discard of a %s job: by operator %v, want %v", tt.state, ch.Job.ByOperator, tt.discardByOperator)
				}
			}
			logs := h.logs.String()
			for _, tt := range tests {
				event := `"msg":"job retried by an operator"`
				audit := !tt.retryErr
				if op == "discard" {
					event = `"msg":"job discarded by an operator"`
					audit = tt.discardAudit
				}
				line := fmt.Sprintf(`"audit":true,"job_id":%d,`, ids[tt.state])
				found := false
				for l := range strings.Lines(logs) {
					found = found || strings.Contains(l, event) && strings.Contains(l, line)
				}
				if found != audit {
					t.Errorf("%s of a %s job: audit line %v, want %v:\n%s", op, tt.state, found, audit, logs)
				}
			}
			for _, f := range []func(context.Context, int64) (Change, error){h.ob.Retry, h.ob.Discard} {
				if _, err := f(ctx, 987654); !errors.Is(err, ErrNoJob) || !strings.Contains(err.Error(), "job 987654: no such job") {
					t.Errorf("%s of a job that does not exist = %v, want ErrNoJob naming it", op, err)
				}
			}
		})
	}
}

// A retry of a discarded job is refused, saying why, while a newer job for
// the same message (Kratos's retry after the discard) holds its unique key.
func TestRetryWithNewerDuplicate(t *testing.T) {
	t.Parallel()
	h := start(t, pgtest.NewDatabase(t), testConfig(t), &deliveries{}, Options{}, false)
	ctx := context.Background()
	msg := recoveryMessage("identity-1", "111222")
	if _, err := h.ob.Enqueue(ctx, msg); err != nil {
		t.Fatal(err)
	}
	jobs, err := h.ob.List(ctx, Filter{})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("List = %v, %v", jobs, err)
	}
	if _, err := h.ob.Discard(ctx, jobs[0].ID); err != nil {
		t.Fatal(err)
	}
	if ans, err := h.ob.Enqueue(ctx, msg); err != nil || ans.Status != "queued" {
		t.Fatalf("enqueue after the discard = %+v, %v; want a new job", ans, err)
	}
	_, err = h.ob.Retry(ctx, jobs[0].ID)
	if err == nil || !strings.Contains(err.Error(), "a newer job holds the same message") {
		t.Errorf("retry = %v, want an error naming the newer job", err)
	}
	if jobs, _ := h.ob.List(ctx, Filter{States: []string{"cancelled"}}); len(jobs) != 1 {
		t.Errorf("the refused retry changed the job: %+v", jobs)
	}
}

// River's UI of the outbox answers under its prefix (authentication is
// its caller's, package queueui).
func TestUIHandler(t *testing.T) {
	t.Parallel()
	h := start(t, pgtest.NewDatabase(t), testConfig(t), &deliveries{}, Options{}, false)
	ids := jobsIn(t, h, "available")
	ui, startUI, err := h.ob.UIHandler("/admin/queue/", h.ob.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := startUI(ctx); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/admin/queue/":                         `<title>River</title>`,
		"/admin/queue/jobs":                     `<title>River</title>`,
		"/admin/queue/api/jobs?state=available": fmt.Sprintf(`"id":%d`, ids["available"]),
	} {
		rec := httptest.NewRecorder()
		ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s = %d %.300s, want 200 with %s", path, rec.Code, rec.Body, want)
		}
	}
}
