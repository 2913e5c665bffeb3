package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// What differs between the Kratos versions the suite runs (KRATOS_VERSION),
// asserted as each version really behaves.

// kratosRecoverySubjects is the subject of Kratos's own recovery code mail
// in each version: v26.2.0 puts the code in it.
var kratosRecoverySubjects = map[string]*regexp.Regexp{
	kratosV1:  regexp.MustCompile(`^Recover access to your account$`),
	kratosV26: regexp.MustCompile(`^Use code \d{6} to recover access to your account$`),
}

// isKratosRecoverySubject says whether subject is that of Kratos's own
// recovery code mail in the version the suite runs.
func isKratosRecoverySubject(subject string) bool {
	return kratosRecoverySubjects[kratosVersion].MatchString(subject)
}

// The gateway tells the versions apart by the admin API's GET /version
// (v1.3.1 redirects it to /admin/version; the default client follows).
func TestKratosAdminAnswersItsVersion(t *testing.T) {
	resp, err := http.Get(env.kratosAdmin + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK || v.Version != kratosVersion {
		t.Fatalf("GET /version: HTTP %d, version %q (%v), want %s", resp.StatusCode, v.Version, err, kratosVersion)
	}
}

// An admin JSON Patch of /credentials/password/config takes effect on both
// versions, with or without a password credential before: on v26.2.0 by
// design, on v1.3.1 by accident (its handler puts the stored credentials
// back after the patch, but the map it puts back is the one the patch was
// decoded into). The gateway patches on v26.2.0 only (kratosadmin).
func TestKratosPatchOfPasswordCredential(t *testing.T) {
	for _, withPassword := range []bool{true, false} {
		name := map[bool]string{true: "with a password", false: "without a password"}[withPassword]
		t.Run(name, func(t *testing.T) {
			email := uniqueEmail(t)
			var id identity
			if withPassword {
				id = createIdentity(t, email, oldPassword)
			} else {
				id = createIdentityWithoutPassword(t, email)
			}
			patch := []map[string]any{{"op": "add", "path": "/credentials/password/config", "value": map[string]any{"hashed_password": "", "use_password_migration_hook": true}}}
			if status := call(t, "PATCH", env.kratosAdmin+"/admin/identities/"+id.ID, nil, patch, nil); status != http.StatusOK {
				t.Fatalf("PATCH /credentials/password/config: HTTP %d, want 200", status)
			}
			cfg, identifiers := passwordCredential(t, id.ID)
			if cfg["use_password_migration_hook"] != true || cfg["hashed_password"] != "" {
				t.Errorf("%s: password config after the patch has %v, want the migration hook and no hash", kratosVersion, keys(cfg))
			}
			if len(identifiers) != 1 || identifiers[0] != email {
				t.Errorf("%s: password identifiers after the patch = %v, want [%s]", kratosVersion, identifiers, email)
			}
		})
	}
}

// A self-service recovery switches the identity's password credential to
// the migration hook. The gateway reads the identity first; a trait change
// that lands between that read and the switch (injected here by a proxy in
// front of Kratos's admin API) survives on v26.2.0, where the switch is a
// JSON Patch of the credential and the metadata, and is undone on v1.3.1,
// where only the PUT of the whole identity switches it.
func TestRecoverySwitchToTheMigrationHookKeepsConcurrentTraitChanges(t *testing.T) {
	for _, withPassword := range []bool{true, false} {
		name := map[bool]string{true: "with a password", false: "without a password"}[withPassword]
		t.Run(name, func(t *testing.T) {
			// Short: an email's local part has at most 64 characters.
			email := "switch-" + randomHex(6) + "@example.com"
			var id identity
			if withPassword {
				id = createIdentity(t, email, oldPassword)
			} else {
				id = createIdentityWithoutPassword(t, email)
			}
			proxy := newAdminRecorder(t, id.ID, func() {
				// On the proxy's goroutine: no t.Fatal here.
				req, _ := http.NewRequest(http.MethodPatch, env.kratosAdmin+"/admin/identities/"+id.ID,
					strings.NewReader(`[{"op":"add","path":"/traits/name","value":"Changed Meanwhile"}]`))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("concurrent trait change: %v", err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("concurrent trait change: HTTP %d", resp.StatusCode)
				}
			})
			startHost(t, hostOptions{enabled: true, kratos: &kratosServer{public: env.kratosPublic, admin: proxy.url}})

			startRecovery(t, email)
			temp := temporaryPassword(t, waitMails(t, email, 1)[0])

			writes := proxy.writes()
			var put, credentialPatch bool
			for _, w := range writes {
				put = put || w.method == http.MethodPut
				credentialPatch = credentialPatch || w.method == http.MethodPatch && strings.Contains(w.body, "/credentials/password/config")
			}
			name := getIdentity(t, id.ID).Traits["name"]
			if kratosIsV26() {
				if put || !credentialPatch {
					t.Errorf("%s: the gateway wrote the identity with %v, want one PATCH of /credentials/password/config and no PUT", kratosVersion, writes)
				}
				if name != "Changed Meanwhile" {
					t.Errorf("%s: traits.name = %v after the recovery, want the concurrent change kept", kratosVersion, name)
				}
			} else {
				if !put || credentialPatch {
					t.Errorf("%s: the gateway wrote the identity with %v, want the PUT (a PATCH of the credential is dropped)", kratosVersion, writes)
				}
				if name != nil {
					t.Errorf("%s: traits.name = %v after the recovery; the PUT writes back the traits it read, so the concurrent change is lost (if that changed, update this test and the README)", kratosVersion, name)
				}
			}

			// Either way the credential now asks the gateway: the temporary
			// password logs in.
			if status, _ := login(t, email, temp); status != http.StatusOK {
				t.Fatalf("login with the temporary password: HTTP %d, want 200", status)
			}
		})
	}
}

// A user who logged in with the mailed temporary password and "changes" it
// to that same password: Kratos v26.2.0's settings flow refuses a new
// password equal to the current one (message 4000039), so the change stays
// required; v1.3.1 accepts it, and the settings hook clears the flag as for
// any new password (the hook is not told the password, so the gateway
// cannot tell either).
func TestNewPasswordEqualToTheTemporaryOne(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d", status)
	}

	status, body := changePassword(t, s.Token, temp)
	flag := getIdentity(t, id.ID).MetadataPublic["password_change_required"]
	if kratosIsV26() {
		if status != http.StatusBadRequest || !strings.Contains(body, "4000039") {
			t.Fatalf("%s: the temporary password as the new one: HTTP %d, want 400 with message 4000039\n%s", kratosVersion, status, body)
		}
		if flag != true {
			t.Errorf("%s: password_change_required = %v after the refused change, want still true", kratosVersion, flag)
		}
		if status, body := changePassword(t, s.Token, "Another-New-Password-83"); status != http.StatusOK {
			t.Fatalf("%s: a different new password: HTTP %d\n%s", kratosVersion, status, body)
		}
		if flag := getIdentity(t, id.ID).MetadataPublic["password_change_required"]; flag != nil {
			t.Errorf("%s: password_change_required = %v after a real change, want gone", kratosVersion, flag)
		}
		return
	}
	if status != http.StatusOK {
		t.Fatalf("%s: the temporary password as the new one: HTTP %d, want 200 (v1.3.1 does not compare)\n%s", kratosVersion, status, body)
	}
	if flag != nil {
		t.Errorf("%s: password_change_required = %v, want cleared by the settings hook", kratosVersion, flag)
	}
}

func createIdentityWithoutPassword(t *testing.T, email string) identity {
	t.Helper()
	var id identity
	if status := call(t, "POST", env.kratosAdmin+"/admin/identities", nil, map[string]any{
		"schema_id": "default",
		"traits":    map[string]any{"email": email},
	}, &id); status != http.StatusCreated {
		t.Fatalf("create identity %s without a password: HTTP %d", email, status)
	}
	return id
}

// passwordCredential reads the identity's password credential: its config
// (nil without one) and identifiers.
func passwordCredential(t *testing.T, id string) (map[string]any, []string) {
	t.Helper()
	var out struct {
		Credentials map[string]struct {
			Identifiers []string       `json:"identifiers"`
			Config      map[string]any `json:"config"`
		} `json:"credentials"`
	}
	if status := call(t, "GET", env.kratosAdmin+"/admin/identities/"+id+"?include_credential=password", nil, nil, &out); status != http.StatusOK {
		t.Fatalf("get identity %s with credentials: HTTP %d", id, status)
	}
	pw, ok := out.Credentials["password"]
	if !ok {
		return nil, nil
	}
	return pw.Config, pw.Identifiers
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// adminRecorder is a reverse proxy in front of Kratos's admin API that
// records the writes to one identity and runs meanwhile once, right after
// Kratos answered the first read of that identity with its credentials and
// before the gateway gets the answer.
type adminRecorder struct {
	url string

	mu     sync.Mutex
	logged []adminWrite
}

type adminWrite struct {
	method, body string
}

// String names the write and, for a patch, the paths it touches.
func (w adminWrite) String() string {
	if w.method != http.MethodPatch {
		return w.method
	}
	var ops []struct {
		Path string `json:"path"`
	}
	_ = json.Unmarshal([]byte(w.body), &ops)
	paths := make([]string, 0, len(ops))
	for _, o := range ops {
		paths = append(paths, o.Path)
	}
	return w.method + " " + strings.Join(paths, ",")
}

func newAdminRecorder(t *testing.T, identityID string, meanwhile func()) *adminRecorder {
	t.Helper()
	upstream, err := url.Parse(env.kratosAdmin)
	if err != nil {
		t.Fatal(err)
	}
	r := &adminRecorder{}
	var once sync.Once
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		if req.Method == http.MethodGet && req.URL.Path == "/admin/identities/"+identityID && req.URL.Query().Has("include_credential") {
			once.Do(meanwhile)
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && strings.HasPrefix(req.URL.Path, "/admin/identities/"+identityID) {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			r.mu.Lock()
			r.logged = append(r.logged, adminWrite{method: req.Method, body: string(body)})
			r.mu.Unlock()
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *adminRecorder) writes() []adminWrite {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]adminWrite(nil), r.logged...)
}
