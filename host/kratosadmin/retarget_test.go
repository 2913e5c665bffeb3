package kratosadmin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// After Retarget every call goes to the new endpoint, and the version read
// from the old one is not trusted for the new one.
func TestRetarget(t *testing.T) {
	t.Parallel()
	oldK, newK := &fakeKratos{version: "v1.3.1"}, &fakeKratos{version: "v26.2.0"}
	oldSrv, newSrv := httptest.NewServer(oldK), httptest.NewServer(newK)
	t.Cleanup(oldSrv.Close)
	t.Cleanup(newSrv.Close)
	ctx := context.Background()

	c := New(oldSrv.URL, &http.Client{})
	if v, err := c.Version(ctx); err != nil || v != "v1.3.1" {
		t.Fatalf("Version before Retarget = %q, %v", v, err)
	}
	c.Retarget(newSrv.URL+"/", &http.Client{})
	if v, err := c.Version(ctx); err != nil || v != "v26.2.0" {
		t.Errorf("Version after Retarget = %q, %v; want the new Kratos's", v, err)
	}
	oldK.mu.Lock()
	newK.mu.Lock()
	defer oldK.mu.Unlock()
	defer newK.mu.Unlock()
	if oldK.versionCalls != 1 || newK.versionCalls != 1 {
		t.Errorf("GET /version calls: old %d, new %d; want 1 each", oldK.versionCalls, newK.versionCalls)
	}
}
