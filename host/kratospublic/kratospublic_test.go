package kratospublic

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// After Retarget whoami goes to the new endpoint.
func TestRetarget(t *testing.T) {
	t.Parallel()
	var oldHits, newHits atomic.Int32
	whoami := func(hits *atomic.Int32) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/sessions/whoami" {
				hits.Add(1)
			}
			w.WriteHeader(http.StatusUnauthorized)
		})
	}
	oldSrv, newSrv := httptest.NewServer(whoami(&oldHits)), httptest.NewServer(whoami(&newHits))
	t.Cleanup(oldSrv.Close)
	t.Cleanup(newSrv.Close)

	c := New(oldSrv.URL, &http.Client{})
	if _, err := c.Session(context.Background(), "ory_kratos_session=x", ""); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Session = %v, want ErrNoSession", err)
	}
	c.Retarget(newSrv.URL, &http.Client{})
	if _, err := c.Session(context.Background(), "ory_kratos_session=x", ""); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Session after Retarget = %v, want ErrNoSession", err)
	}
	if oldHits.Load() != 1 || newHits.Load() != 1 {
		t.Errorf("whoami calls: old %d, new %d; want 1 each", oldHits.Load(), newHits.Load())
	}
}
