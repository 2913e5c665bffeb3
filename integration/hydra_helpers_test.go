package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
)

// hydraVersion is the Ory Hydra scripts/deps.sh builds into
// .cache/hydra-<version>/hydra (from integration/tools/hydra).
const hydraVersion = "v2.3.0"

// hydraServer is a real Ory Hydra OAuth2 server on loopback (`hydra serve
// all --dev`, in-memory database, opaque access tokens), the token endpoint
// of the SMTP XOAUTH2 tests.
type hydraServer struct {
	public, admin string // base URLs, no trailing slash
}

// hydraOptions tune a Hydra; the zero value is Hydra's defaults.
type hydraOptions struct {
	// AccessTokenTTL is ttl.access_token (Hydra's default: 1h). Hydra
	// answers expires_in in whole seconds, rounded down or up.
	AccessTokenTTL time.Duration
}

// startHydra runs a Hydra of the test's own with Hydra's defaults and stops
// it when the test ends.
func startHydra(t *testing.T) *hydraServer {
	t.Helper()
	return startHydraWith(t, hydraOptions{})
}

// startHydraWith is startHydra with options, e.g. short-lived tokens. Its
// log is in the artifacts folder as hydra-<test name>.log.
func startHydraWith(t *testing.T, o hydraOptions) *hydraServer {
	t.Helper()
	bin := filepath.Join(env.root, ".cache", "hydra-"+hydraVersion, "hydra")
	if !isExecutable(bin) {
		t.Fatalf("Ory Hydra %s is not built at %s: run scripts/deps.sh hydra (or scripts/deps.sh, which installs every dependency of the tests)", hydraVersion, bin)
	}
	publicPort, adminPort := freePort(), freePort()
	h := &hydraServer{
		public: fmt.Sprintf("http://127.0.0.1:%d", publicPort),
		admin:  fmt.Sprintf("http://127.0.0.1:%d", adminPort),
	}
	ttl := ""
	if o.AccessTokenTTL > 0 {
		ttl = fmt.Sprintf("ttl:\n  access_token: %s\n", o.AccessTokenTTL)
	}
	// A database of its own in the throwaway PostgreSQL cluster, not `dsn:
	// memory`: Hydra's in-memory sqlite (one shared cache) fails a read that
	// meets a write, and its introspection answers such a failure
	// "active": false (fosite's WriteIntrospectionError), so a valid token
	// looked revoked whenever a sign-in's check met a token being issued.
	dsn := pgtest.NewDatabase(t)
	// Keys from Hydra v2.3.0's .schema/config.schema.json. sqa.opt_out:
	// no telemetry calls to the internet.
	config := fmt.Sprintf(`dsn: %q
log:
  level: warn
  format: text
serve:
  public:
    host: 127.0.0.1
    port: %d
  admin:
    host: 127.0.0.1
    port: %d
urls:
  self:
    issuer: %s/
strategies:
  access_token: opaque
secrets:
  system:
    - it-hydra-system-secret-%s
oauth2:
  expose_internal_errors: true
sqa:
  opt_out: true
%s`, dsn, publicPort, adminPort, h.public, randomHex(16), ttl)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hydra.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	migrate := exec.Command(bin, "migrate", "sql", "up", "--read-from-env", "--yes", "-c", "hydra.yml")
	migrate.Dir = dir
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("Hydra: migrate its database: %v\n%s", err, out)
	}
	name := "hydra-" + strings.Trim(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"), "-")
	stop, err := env.start(name, bin, dir, nil, "serve", "all", "--dev", "-c", "hydra.yml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	for _, u := range []string{h.public + "/health/ready", h.admin + "/health/ready"} {
		if err := waitHTTP(u, 30*time.Second); err != nil {
			t.Fatalf("Hydra not ready (log: %s): %v", filepath.Join(env.logDir, name+".log"), err)
		}
	}
	return h
}

// PublicURL is Hydra's public base URL (also its issuer, with a trailing
// slash).
func (h *hydraServer) PublicURL() string { return h.public }

// AdminURL is Hydra's admin base URL.
func (h *hydraServer) AdminURL() string { return h.admin }

// TokenURL is Hydra's token endpoint, for smtp.oauth2.token_url.
func (h *hydraServer) TokenURL() string { return h.public + "/oauth2/token" }

// createClient registers an OAuth2 client for the client credentials grant
// that may ask for scopes, authenticating with client_secret_basic, and
// returns its id and secret. The secret joins the secrets no gateway output
// may show (zz_secrets_test.go).
func (h *hydraServer) createClient(t *testing.T, scopes ...string) (id, secret string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"client_name":                uniqueEmail(t),
		"grant_types":                []string{"client_credentials"},
		"scope":                      strings.Join(scopes, " "),
		"token_endpoint_auth_method": "client_secret_basic",
	})
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	status, raw := h.do(t.Context(), "POST", h.admin+"/admin/clients", "application/json", string(body), "", "", &out)
	if status != http.StatusCreated || out.ClientID == "" || out.ClientSecret == "" {
		t.Fatalf("Hydra: create client: HTTP %d %s", status, raw)
	}
	observed.secret(out.ClientSecret)
	return out.ClientID, out.ClientSecret
}

// clientConfig is the client credentials flow of a client createClient
// registered, asking for scopes. It authenticates with HTTP basic only, as
// registered: x/oauth2's default, AuthStyleAutoDetect, retries any refusal
// of a basic attempt with the secret in the form, which Hydra refuses as a
// method the client does not use (401 invalid_client), hiding the first
// answer (e.g. 400 invalid_scope).
func (h *hydraServer) clientConfig(id, secret string, scopes ...string) *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: h.TokenURL(), Scopes: scopes, AuthStyle: oauth2.AuthStyleInHeader}
}

// introspect asks Hydra's admin API about an access token (RFC 7662):
// whether it is active (known, not expired, not revoked) and its scopes,
// space-separated.
func (h *hydraServer) introspect(ctx context.Context, token string) (active bool, scope string, err error) {
	var out struct {
		Active bool   `json:"active"`
		Scope  string `json:"scope"`
	}
	status, raw := h.do(ctx, "POST", h.admin+"/admin/oauth2/introspect", "application/x-www-form-urlencoded",
		url.Values{"token": {token}}.Encode(), "", "", &out)
	if status != http.StatusOK {
		return false, "", fmt.Errorf("hydra introspection: HTTP %d %s", status, raw)
	}
	return out.Active, out.Scope, nil
}

// revokeToken revokes an access token through Hydra's public revocation
// endpoint (RFC 7009), authenticating as the client it was issued to.
// Introspection then says inactive.
func (h *hydraServer) revokeToken(t *testing.T, clientID, secret, token string) {
	t.Helper()
	status, raw := h.do(t.Context(), "POST", h.public+"/oauth2/revoke", "application/x-www-form-urlencoded",
		url.Values{"token": {token}, "token_type_hint": {"access_token"}}.Encode(), clientID, secret, nil)
	if status != http.StatusOK {
		t.Fatalf("Hydra: revoke token: HTTP %d %s", status, raw)
	}
}

// xoauth2Validator is an smtptest.Options.XOAUTH2 that accepts what a mail
// provider with Hydra as its authorization server would: the XOAUTH2 user
// is wantUser and Hydra says the token is active with wantScope among its
// scopes. A refusal is answered 535 5.7.8 and its reason logged; an
// introspection that fails is answered 454 4.7.0, a temporary failure.
// Every token presented joins the secrets no gateway output may show.
func (h *hydraServer) xoauth2Validator(t testing.TB, wantUser, wantScope string) func(user, token string) error {
	return func(user, token string) error {
		observed.secret(token)
		refuse := func(reason string) error {
			t.Logf("XOAUTH2 server: refused %s: %s", user, reason)
			return errors.New(reason)
		}
		if user != wantUser {
			return refuse(fmt.Sprintf("user %q, want %q", user, wantUser))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		active, scope, err := h.introspect(ctx, token)
		if err != nil {
			t.Logf("XOAUTH2 server: %v", err)
			return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
		}
		if !active {
			return refuse("token not active (unknown, expired or revoked)")
		}
		if !slices.Contains(strings.Fields(scope), wantScope) {
			return refuse(fmt.Sprintf("token scope %q lacks %q", scope, wantScope))
		}
		return nil
	}
}

// do sends one request to Hydra (with HTTP basic client authentication
// when clientID is set, form-encoded as RFC 6749 2.3.1 asks), decodes a 2xx
// JSON answer into out when out is not nil, and returns the status and the
// body. A transport error is status 0 and the error as the body.
func (h *hydraServer) do(ctx context.Context, method, u, contentType, body, clientID, secret string, out any) (int, string) {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if clientID != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			return 0, fmt.Sprintf("HTTP %d, body not JSON: %v: %s", resp.StatusCode, err, raw)
		}
	}
	return resp.StatusCode, string(raw)
}
