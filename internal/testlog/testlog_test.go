package testlog

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Concurrent writes and reads neither race (go test -race) nor lose bytes.
func TestConcurrentWritesAndReads(t *testing.T) {
	t.Parallel()
	var b Buffer
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 100 {
				fmt.Fprintf(&b, "%d-%d\n", i, j)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 400 {
		t.Errorf("%d lines, want 400", got)
	}
}
