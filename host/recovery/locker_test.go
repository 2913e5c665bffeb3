package recovery

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// locker records the cross-host lock as a Locker (package outbox's
// advisory lock runs against PostgreSQL in its own tests).
type locker struct {
	mu     sync.Mutex
	events []string
	err    error
	// atUnlock, if set, is called as the lock is released.
	atUnlock func()
}

func (l *locker) Lock(_ context.Context, id string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	l.events = append(l.events, "lock "+id)
	return func() {
		if l.atUnlock != nil {
			l.atUnlock()
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.events = append(l.events, "unlock "+id)
	}, nil
}

// With a Locker, a reset holds the identity's cross-host lock until its
// mailed_at mark is written, so the next host's reset sees the mark.
func TestResetHoldsCrossHostLockUntilMarked(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	var callsAtUnlock []string
	l := &locker{atUnlock: func() { callsAtUnlock = append([]string(nil), f.calls...) }}
	f.svc.locker = l
	if _, err := f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com", Trigger: "self-service", Message: "k1"}, keepPolicy); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(l.events, ","); got != "lock id-1,unlock id-1" {
		t.Errorf("lock events %s, want one lock and one unlock of id-1", got)
	}
	if len(callsAtUnlock) == 0 || callsAtUnlock[len(callsAtUnlock)-1] != "patch" {
		t.Errorf("calls when the lock was released: %v; want the mailed_at patch written first", callsAtUnlock)
	}
}

// A reset that cannot take the cross-host lock changes nothing and fails
// (the outbox retries it); the settings hook, which a user waits for, goes
// on with this host's lock and a warning.
func TestCrossHostLockUnavailable(t *testing.T) {
	t.Parallel()
	down := errors.New("take the identity's lock: connection refused")

	f := newFixture(nil)
	f.svc.locker = &locker{err: down}
	_, err := f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com", Trigger: "self-service", Message: "k1"}, keepPolicy)
	if !errors.Is(err, down) || len(f.calls) != 0 {
		t.Fatalf("reset without the lock = %v with calls %v; want the lock's error and no call at all", err, f.calls)
	}

	f = newFixture(nil)
	f.svc.locker = &locker{err: down}
	if _, err := f.svc.PasswordChanged(context.Background(), "id-1", keepPolicy); err != nil {
		t.Fatalf("settings hook without the cross-host lock: %v", err)
	}
	if !strings.Contains(f.logs.String(), "identity not locked across hosts") {
		t.Errorf("no warning logged:\n%s", f.logs.String())
	}
}
