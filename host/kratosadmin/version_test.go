package kratosadmin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVersionAtLeast(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{
		"v26.2.0":        true,
		"v26.2.1":        true,
		"v26.10.0":       true,
		"v27.0.0":        true,
		"v26.2.0-pre.1":  true,
		"v26.2.0+build5": true,
		"v26.1.9":        false,
		"v25.4.0":        false,
		"v1.3.1":         false,
		"26.2.0":         false,
		"master":         false,
		"":               false,
		"v26.2":          false,
		"v26.x.0":        false,
	} {
		if got := versionAtLeast(v, patchMinVersion); got != want {
			t.Errorf("versionAtLeast(%q) = %t, want %t", v, got, want)
		}
	}
}

// fakeKratos answers GET /version with version (a 500 when empty) and
// records every write to identity id-1.
type fakeKratos struct {
	version string

	mu           sync.Mutex
	versionCalls int
	method, body string
	writes       int
}

func (f *fakeKratos) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/version":
		f.versionCalls++
		if f.version == "" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"version": f.version})
	case r.URL.Path == "/admin/identities/id-1":
		raw, _ := io.ReadAll(r.Body)
		f.method, f.body, f.writes = r.Method, string(raw), f.writes+1
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"id-1","schema_id":"default","schema_url":"http://127.0.0.1:4433/schemas/ZGVmYXVsdA","traits":{"email":"a@example.com"}}`))
	default:
		http.NotFound(w, r)
	}
}

var testIdentity = &Identity{ID: "id-1", SchemaID: "default", State: "active",
	Traits: map[string]any{"email": "a@example.com", "name": "As read"}, PasswordHash: "$2a$10$x"}

// The switch to the migration hook is a patch of the credential and the
// metadata on v26.2.0 and newer, a PUT of the whole identity elsewhere; a
// new password is always a PUT.
func TestSetPasswordPatchesOnlyWhereKratosAppliesIt(t *testing.T) {
	t.Parallel()
	hook := PasswordUpdate{UseMigrationHook: true,
		MetadataPublic: map[string]any{"plan": "pro"}, MetadataAdmin: map[string]any{"email_gateway": map[string]any{"k": "v"}}}
	tests := []struct {
		name, version string
		update        PasswordUpdate
		wantMethod    string
	}{
		{"v26.2.0 migration hook", "v26.2.0", hook, http.MethodPatch},
		{"v1.3.1 migration hook", "v1.3.1", hook, http.MethodPut},
		{"v25.4.0 migration hook (not tested)", "v25.4.0", hook, http.MethodPut},
		{"unreadable version", "", hook, http.MethodPut},
		{"v26.2.0 new password", "v26.2.0", PasswordUpdate{Password: "Temp-Password-1"}, http.MethodPut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeKratos{version: tt.version}
			srv := httptest.NewServer(f)
			defer srv.Close()
			c := New(srv.URL, srv.Client())
			if err := c.SetPassword(context.Background(), testIdentity, tt.update); err != nil {
				t.Fatal(err)
			}
			if f.method != tt.wantMethod {
				t.Fatalf("%s wrote with %s, want %s", tt.version, f.method, tt.wantMethod)
			}
			if f.method != http.MethodPatch {
				return
			}
			var got []map[string]any
			if err := json.Unmarshal([]byte(f.body), &got); err != nil {
				t.Fatal(err)
			}
			want := []map[string]any{
				{"op": "add", "path": "/credentials/password/config", "value": map[string]any{"hashed_password": "", "use_password_migration_hook": true}},
				{"op": "add", "path": "/metadata_public", "value": map[string]any{"plan": "pro"}},
				{"op": "add", "path": "/metadata_admin", "value": map[string]any{"email_gateway": map[string]any{"k": "v"}}},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("patch (-want +got); it must not name the traits:\n%s", diff)
			}
		})
	}
}

// A null metadata stays as stored: the patch does not name it.
func TestPatchLeavesNullMetadataAlone(t *testing.T) {
	t.Parallel()
	f := &fakeKratos{version: "v26.2.0"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := New(srv.URL, srv.Client())
	if err := c.SetPassword(context.Background(), testIdentity, PasswordUpdate{UseMigrationHook: true, MetadataAdmin: map[string]any{"a": 1.0}}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	_ = json.Unmarshal([]byte(f.body), &got)
	for _, op := range got {
		if op["path"] == "/metadata_public" {
			t.Errorf("the patch names metadata_public, which was null: %s", f.body)
		}
	}
}

// The version is asked once a minute, not for every write; a failed answer
// is asked again.
func TestVersionIsCached(t *testing.T) {
	t.Parallel()
	f := &fakeKratos{version: "v26.2.0"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := New(srv.URL, srv.Client())
	for range 3 {
		if err := c.SetPassword(context.Background(), testIdentity, PasswordUpdate{UseMigrationHook: true}); err != nil {
			t.Fatal(err)
		}
	}
	if f.versionCalls != 1 || f.writes != 3 {
		t.Errorf("3 writes asked GET /version %d times (%d writes), want once", f.versionCalls, f.writes)
	}

	down := &fakeKratos{}
	srv2 := httptest.NewServer(down)
	defer srv2.Close()
	c2 := New(srv2.URL, srv2.Client())
	for range 2 {
		if _, err := c2.Version(context.Background()); err == nil {
			t.Fatal("a 500 from GET /version is no version")
		}
	}
	if down.versionCalls != 2 {
		t.Errorf("a failed GET /version was cached: %d calls for 2 asks", down.versionCalls)
	}
}
