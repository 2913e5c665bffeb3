package bulkreset

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
)

// kratos is an in-memory directory of identities with a given page size.
type kratos struct {
	ids     []string
	listErr error
}

func (k *kratos) Identity(_ context.Context, id string) (*kratosadmin.Identity, error) {
	for _, i := range k.ids {
		if i == id {
			return &kratosadmin.Identity{ID: id, RecoveryAddresses: []string{id + "@example.com"}}, nil
		}
	}
	return nil, fmt.Errorf("get identity %s: %w", id, kratosadmin.ErrNotFound)
}

func (k *kratos) FindByIdentifier(ctx context.Context, email string) (*kratosadmin.Identity, error) {
	return k.Identity(ctx, strings.TrimSuffix(email, "@example.com"))
}

func (k *kratos) ListIdentityIDs(_ context.Context, token string, size int) ([]string, string, error) {
	if k.listErr != nil {
		return nil, "", k.listErr
	}
	start := 0
	if token != "" {
		fmt.Sscanf(token, "%d", &start)
	}
	end := min(start+size, len(k.ids))
	next := ""
	if end < len(k.ids) {
		next = fmt.Sprint(end)
	}
	return k.ids[start:end], next, nil
}

// resetter remembers the message keys it handled, as Kratos's metadata does.
type resetter struct {
	mu       sync.Mutex
	kratos   *kratos
	handled  map[string]bool
	reqs     []recovery.Request
	failFor  string
	inFlight int
	peak     int
}

func (r *resetter) Reset(ctx context.Context, req recovery.Request, _ recovery.Policy) (recovery.Result, error) {
	r.mu.Lock()
	r.inFlight++
	r.peak = max(r.peak, r.inFlight)
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	defer func() { r.mu.Lock(); r.inFlight--; r.mu.Unlock() }()
	time.Sleep(time.Millisecond) // let concurrent resets overlap

	if _, err := r.kratos.Identity(ctx, req.IdentityID); err != nil {
		return recovery.Result{}, err
	}
	if req.IdentityID == r.failFor {
		return recovery.Result{}, errors.New("send temporary password mail: smtp connect: connection refused")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Like recovery.Service, a message is handled once per identity.
	key := req.IdentityID + "\x00" + req.Message
	if r.handled[key] {
		return recovery.Result{Outcome: recovery.OutcomeDuplicate}, nil
	}
	r.handled[key] = true
	return recovery.Result{Outcome: recovery.OutcomeSent}, nil
}

func setup(n int) (*kratos, *resetter) {
	k := &kratos{}
	for i := range n {
		k.ids = append(k.ids, fmt.Sprintf("id-%03d", i))
	}
	return k, &resetter{kratos: k, handled: map[string]bool{}}
}

func TestRunFileWithUnknownAndFailingIdentities(t *testing.T) {
	t.Parallel()
	k, r := setup(5)
	r.failFor = "id-003"
	file := "# breach 2026-11\nid-000\nid-001\n\nid-001\nid-404\nid-003\n"
	var progress []int
	sum, err := Run(context.Background(), k, r, Selection{File: strings.NewReader(file)}, Options{
		RunID: "run1", Concurrency: 2,
		Progress: func(done, total int, _ Result) { progress = append(progress, done*100+total) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Count("reset") != 2 || len(sum.Failed()) != 2 {
		t.Fatalf("summary %+v, want 2 reset and 2 failed", sum)
	}
	want := []Result{
		{IdentityID: "id-003", Outcome: "failed", Reason: "send temporary password mail: smtp connect: connection refused"},
		{IdentityID: "id-404", Outcome: "failed", Reason: "identity not found in Kratos"},
	}
	if diff := cmp.Diff(want, sum.Failed()); diff != "" {
		t.Errorf("failed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{104, 204, 304, 404}, progress); diff != "" {
		t.Errorf("progress (done*100+total) (-want +got):\n%s", diff)
	}
	for _, req := range r.reqs {
		if req.Trigger != "admin" || req.Recipient != "" || req.Message == "" {
			t.Errorf("request %+v, want an admin reset to the first recovery address with a run key", req)
		}
	}
}

// Running again with the same run id skips what the first run did.
func TestRunResumes(t *testing.T) {
	t.Parallel()
	k, r := setup(6)
	opts := Options{RunID: "run1", Concurrency: 3}
	if _, err := Run(context.Background(), k, r, Selection{ID: "id-002"}, opts); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), k, r, Selection{All: true, PageSize: 4}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Count("reset") != 5 || sum.Count("skipped") != 1 || sum.Skipped()[0].IdentityID != "id-002" {
		t.Errorf("resumed run %+v, want 5 reset and id-002 skipped", sum)
	}
	again, _ := Run(context.Background(), k, r, Selection{All: true, PageSize: 4}, Options{RunID: "run2", Concurrency: 3})
	if again.Count("reset") != 6 {
		t.Errorf("a new run id resets again: %+v", again)
	}
}

func TestRunBoundsConcurrency(t *testing.T) {
	t.Parallel()
	k, r := setup(40)
	if _, err := Run(context.Background(), k, r, Selection{All: true, PageSize: 7}, Options{RunID: "x", Concurrency: 3}); err != nil {
		t.Fatal(err)
	}
	if r.peak > 3 || len(r.reqs) != 40 {
		t.Errorf("peak concurrency %d over %d resets, want at most 3 over 40", r.peak, len(r.reqs))
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	k, r := setup(3)
	sum, err := Run(context.Background(), k, nil, Selection{All: true}, Options{RunID: "x", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Count("would-reset") != 3 || len(r.reqs) != 0 || !strings.Contains(sum.Results[0].Reason, "@example.com") {
		t.Errorf("dry run %+v", sum)
	}
}

func TestSelectionErrors(t *testing.T) {
	t.Parallel()
	k, r := setup(2)
	if _, err := Run(context.Background(), k, r, Selection{Email: "nobody@example.com"}, Options{}); !errors.Is(err, kratosadmin.ErrNotFound) {
		t.Errorf("unknown email: %v", err)
	}
	if _, err := Run(context.Background(), k, r, Selection{}, Options{}); err == nil {
		t.Error("an empty selection ran")
	}
	k.listErr = fmt.Errorf("list identities: %w", kratosadmin.ErrUnavailable)
	if _, err := Run(context.Background(), k, r, Selection{All: true}, Options{}); !errors.Is(err, kratosadmin.ErrUnavailable) {
		t.Errorf("Kratos unreachable while listing: %v", err)
	}
}

func TestInterruptedRunSaysHowToResume(t *testing.T) {
	t.Parallel()
	k, r := setup(50)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := Run(ctx, k, r, Selection{All: true}, Options{RunID: "run9", Concurrency: 1, Progress: func(int, int, Result) {
		if n++; n == 5 {
			cancel()
		}
	}})
	if err == nil || !strings.Contains(err.Error(), "--run-id run9") {
		t.Fatalf("Run after cancel = %v, want the resume hint", err)
	}
}

func TestRunIDIsStablePerSelectionAndDay(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	a := RunID(Selection{All: true}, "", day)
	if a != RunID(Selection{All: true}, "", day.Add(10*time.Hour)) {
		t.Error("the run id changed within a day")
	}
	if a == RunID(Selection{All: true}, "", day.Add(24*time.Hour)) || a == RunID(Selection{ID: "x"}, "", day) {
		t.Error("the run id does not depend on the day and the selection")
	}
}
