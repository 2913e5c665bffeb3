package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// Kratos's payloads to the gateway, as the running Kratos version sends
// them with configs/kratos: host/httpapi/testdata/kratos-<version>/ holds a
// capture of each, which the gateway's golden tests parse with its own
// types (host/httpapi/golden_test.go).
var payloadSamples = []struct {
	file string // in testdata/kratos-<version>/
	path string // where Kratos sends it
	// templateType tells the courier messages apart.
	templateType string
}{
	{"courier-recovery_code_valid.json", "/courier", "recovery_code_valid"},
	{"courier-verification_code_valid.json", "/courier", "verification_code_valid"},
	{"hook-login-after-password.json", "/hooks/login", ""},
	{"hook-settings-after-password.json", "/hooks/settings", ""},
	{"hook-password-migration.json", "/hooks/password", ""},
}

// samplePasswords are throwaway passwords of the capture journey; the
// migration hook sample carries the one typed at login, by design.
const (
	samplePasswordOld   = "Sample-Old-Password-31"
	samplePasswordLogin = "Sample-Login-Password-47"
	samplePasswordNew   = "Sample-New-Password-59"
)

// A Kratos of the suite's version, wired by configs/kratos to a recorder
// instead of the gateway, runs one journey (recovery, verification, a
// password login through the migration hook, a password change), and every
// payload it sends is compared, key by key, with the committed sample of
// that version: a Kratos or configs/kratos change that alters what the
// gateway receives fails here. CAPTURE_SAMPLES=1 writes the captures as
// the new samples instead.
func TestKratosPayloadSamples(t *testing.T) {
	rec := newPayloadRecorder(t)
	k, stop, err := env.startKratosFor("kratos-samples", "bcrypt", rec.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	useKratos(t, k)

	email := "sample-" + randomHex(4) + "@example.com"
	var id identity
	if status := call(t, "POST", env.kratosAdmin+"/admin/identities", nil, map[string]any{
		"schema_id": "default",
		"traits":    map[string]any{"email": email, "name": "Sam Sample"},
		// As the gateway leaves an identity whose temporary password logged in.
		"metadata_public": map[string]any{"password_change_required": true, "temporary_password_expires_at": "2030-01-01T00:00:00Z"},
		"credentials":     map[string]any{"password": map[string]any{"config": map[string]any{"password": samplePasswordOld}}},
	}, &id); status != http.StatusCreated {
		t.Fatalf("create identity: HTTP %d", status)
	}

	startRecovery(t, email)
	rec.wait(t, "/courier", "recovery_code_valid")
	startVerification(t, email)
	rec.wait(t, "/courier", "verification_code_valid")

	// The credential asks the migration hook, as during a pending reset; the
	// PUT does it on both versions.
	if status := call(t, "PUT", env.kratosAdmin+"/admin/identities/"+id.ID, nil, map[string]any{
		"schema_id": "default", "state": "active",
		"traits":          map[string]any{"email": email, "name": "Sam Sample"},
		"metadata_public": map[string]any{"password_change_required": true, "temporary_password_expires_at": "2030-01-01T00:00:00Z"},
		"credentials":     map[string]any{"password": map[string]any{"config": map[string]any{"use_password_migration_hook": true}}},
	}, nil); status != http.StatusOK {
		t.Fatalf("switch to the migration hook: HTTP %d", status)
	}
	status, s := login(t, email, samplePasswordLogin)
	if status != http.StatusOK {
		t.Fatalf("login through the migration hook: HTTP %d", status)
	}
	rec.wait(t, "/hooks/password", "")
	rec.wait(t, "/hooks/login", "")
	if status, body := changePassword(t, s.Token, samplePasswordNew); status != http.StatusOK {
		t.Fatalf("change the password: HTTP %d\n%s", status, body)
	}
	rec.wait(t, "/hooks/settings", "")

	dir := filepath.Join(env.root, "host", "httpapi", "testdata", "kratos-"+kratosVersion)
	capture := os.Getenv("CAPTURE_SAMPLES") != ""
	for _, sample := range payloadSamples {
		got := rec.body(sample.path, sample.templateType)
		if capture {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, sample.file), got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(filepath.Join(dir, sample.file))
		if err != nil {
			t.Errorf("%s: %v (capture the samples with CAPTURE_SAMPLES=1 KRATOS_VERSION=%s)", sample.file, err, kratosVersion)
			continue
		}
		gotKeys, wantKeys := jsonKeyPaths(t, got), jsonKeyPaths(t, want)
		if !slices.Equal(gotKeys, wantKeys) {
			t.Errorf("Kratos %s sends %s another shape than testdata/kratos-%s/%s:\n only sent now: %v\n only in the sample: %v\n"+
				"if that is right, capture the samples again (CAPTURE_SAMPLES=1 KRATOS_VERSION=%s) and check the golden tests",
				kratosVersion, sample.path, kratosVersion, sample.file, minus(gotKeys, wantKeys), minus(wantKeys, gotKeys), kratosVersion)
		}
	}
}

// payloadRecorder stands where the gateway would: it answers each endpoint
// as the gateway answers an identity without a pending reset, and keeps the
// last body per endpoint (per template type for the courier).
type payloadRecorder struct {
	url string

	mu     sync.Mutex
	bodies map[string][]byte
}

func newPayloadRecorder(t *testing.T) *payloadRecorder {
	t.Helper()
	r := &payloadRecorder{bodies: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, _ := io.ReadAll(req.Body)
		if req.Header.Get("Authorization") != "Bearer "+env.apiKey {
			t.Errorf("Kratos called %s without the webhook key", req.URL.Path)
		}
		key := req.URL.Path
		if key == "/courier" {
			var m struct {
				TemplateType string `json:"template_type"`
			}
			_ = json.Unmarshal(raw, &m)
			key += " " + m.TemplateType
		}
		r.mu.Lock()
		r.bodies[key] = indentJSON(raw)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch req.URL.Path {
		case "/hooks/password":
			_, _ = w.Write([]byte(`{"status":"password_match"}`))
		case "/hooks/login":
			_, _ = w.Write([]byte(`{"status":"allowed"}`))
		default:
			_, _ = w.Write([]byte(`{}`))
		}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *payloadRecorder) body(path, templateType string) []byte {
	key := path
	if path == "/courier" {
		key += " " + templateType
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[key]
}

func (r *payloadRecorder) wait(t *testing.T, path, templateType string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.body(path, templateType) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("Kratos sent nothing to %s %s", path, templateType)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// indentJSON gives a JSON body as the samples hold it: sorted keys, two
// spaces; a body that is not JSON stays as it is.
func indentJSON(raw []byte) []byte {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return raw
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return b.Bytes()
}

// jsonKeyPaths lists every key path of a JSON document (arrays as []),
// sorted. The values of request_headers (the headers of the request that
// made Kratos send a mail) and transient_payload depend on the caller, not
// on Kratos: only their presence counts.
func jsonKeyPaths(t *testing.T, raw []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, raw)
	}
	set := map[string]bool{}
	var walk func(v any, prefix string)
	walk = func(v any, prefix string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := prefix + "." + k
				set[p] = true
				if k != "request_headers" && k != "transient_payload" {
					walk(e, p)
				}
			}
		case []any:
			for _, e := range x {
				walk(e, prefix+"[]")
			}
		}
	}
	walk(v, "")
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
