package wiring

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Run keeps the hook unproven, with the failing stage as the reason, until
// a check passes; a Recheck makes it unproven again until the next pass.
func TestStatusRun(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	results := []error{errors.New("HTTP 500 \"Password migration hook is not enabled\""), nil, nil}
	checked := make(chan struct{}, 10)
	check := func(context.Context) Report {
		mu.Lock()
		defer mu.Unlock()
		err := results[0]
		if len(results) > 1 {
			results = results[1:]
		}
		checked <- struct{}{}
		return Report{Stages: []Stage{{Name: StageHook, Err: err}, {Name: StageCleanup, Err: errors.New("delete failed")}}}
	}
	var observed []bool
	s := NewStatus("not checked yet")
	if !s.Checking() {
		t.Error("Checking before the first check = false, want true")
	}
	if NewStatus("").Checking() {
		t.Error("Checking with the check turned off = true, want false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		s.Run(ctx, check, Schedule{First: time.Millisecond, Max: 2 * time.Millisecond, Every: time.Hour}, slog.New(slog.DiscardHandler),
			func(ok bool) { mu.Lock(); observed = append(observed, ok); mu.Unlock() })
		close(done)
	}()
	<-checked
	waitFor(t, func() bool { return s.Unproven() != "not checked yet" })
	if got := s.Unproven(); got == "" || !containsAll(got, StageHook, "migration hook is not enabled") {
		t.Errorf("Unproven after a failed check = %q, want the stage and Kratos's answer", got)
	}
	if s.Checking() {
		t.Error("Checking after a failed check = true: a miswired Kratos would hold recoveries forever")
	}
	<-checked // the retry, after First
	waitFor(t, func() bool { return s.Unproven() == "" })

	s.Recheck("re-checking after a config change")
	if got := s.Unproven(); got != "re-checking after a config change" || !s.Checking() {
		t.Errorf("right after Recheck: Unproven = %q, Checking = %v; want the reason and true", got, s.Checking())
	}
	<-checked
	waitFor(t, func() bool { return s.Unproven() == "" })
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != 3 || observed[0] || !observed[1] || !observed[2] {
		t.Errorf("observed %v, want [false true true]: a canary left behind does not make the hook unproven", observed)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition never held")
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
