package wiring

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Status is what a serving host knows about the password migration hook:
// proven, or not and why. Until it is proven, a self-service recovery is
// left to Kratos (recovery.Policy.HookUnproven).
type Status struct {
	mu     sync.Mutex
	reason string
	// checking is true from the start and from a Recheck until the next
	// result: the hook may well be proven, it is just not known yet.
	checking bool
	recheck  chan struct{}
}

// NewStatus starts unproven with reason, a check pending; an empty reason
// means proven (the check is turned off).
func NewStatus(reason string) *Status {
	return &Status{reason: reason, checking: reason != "", recheck: make(chan struct{}, 1)}
}

// Checking reports whether a check is pending that may prove the hook: the
// first one, or one after a Recheck. The outbox holds recoveries back
// meanwhile rather than hand them to Kratos for want of a result.
func (s *Status) Checking() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checking
}

// Unproven says why the hook is not proven, or "" once it is.
func (s *Status) Unproven() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

func (s *Status) set(reason string, checking bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reason, s.checking = reason, checking
}

// Recheck asks Run to prove the hook again, e.g. after the webhook key or
// secrets.cipher changed; the hook counts as unproven until then.
func (s *Status) Recheck(reason string) {
	s.set(reason, true)
	select {
	case s.recheck <- struct{}{}:
	default:
	}
}

// Schedule shapes Run's retries: from First, doubling up to Max, while the
// check fails; Every once it passed.
type Schedule struct {
	First, Max, Every time.Duration
}

// Run proves the hook with check until ctx ends: at once, again with
// backoff while it fails (Kratos may start after the gateway), and every
// sched.Every after it passed, since kratos.yml can change under a running
// gateway. observe is told each result.
func (s *Status) Run(ctx context.Context, check func(context.Context) Report, sched Schedule, log *slog.Logger, observe func(proven bool)) {
	wait := sched.First
	for {
		runCtx, cancel := context.WithTimeout(ctx, time.Minute)
		rep := check(runCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		err := rep.Proven()
		next := sched.Every
		if err != nil {
			s.set(err.Error(), false)
			log.Error("wiring: Kratos's password migration hook is not proven; self-service recoveries get Kratos's own message until it is",
				"event", "wiring_check", "result", "unverified", "error", err.Error(), "retry_in", wait.String())
			next, wait = wait, min(2*wait, sched.Max)
		} else {
			s.set("", false)
			log.Info("wiring: Kratos calls the gateway's password migration hook", "event", "wiring_check", "result", "verified")
			wait = sched.First
		}
		if observe != nil {
			observe(err == nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.recheck:
		case <-time.After(next):
		}
	}
}
