package sdk

import (
	"sync/atomic"
	"testing"
	"time"
)

// A plugin whose host is gone (it was reparented) ends; one whose host
// runs does not; one launched by init has no host to watch.
func TestWatchParent(t *testing.T) {
	t.Parallel()
	var ppid atomic.Int64
	ppid.Store(4242)
	orphaned := make(chan struct{})
	go watchParent(func() int { return int(ppid.Load()) }, time.Millisecond, func() { close(orphaned) })
	select {
	case <-orphaned:
		t.Fatal("orphaned while the host runs")
	case <-time.After(50 * time.Millisecond):
	}
	ppid.Store(1)
	select {
	case <-orphaned:
	case <-time.After(5 * time.Second):
		t.Fatal("not orphaned after the host was gone")
	}

	done := make(chan struct{})
	go func() {
		watchParent(func() int { return 1 }, time.Millisecond, func() { t.Error("orphaned under init") })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchParent under init did not return")
	}
}
