package smtpsend

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

const testClientSecret = "cl1ent-s3cret-never-printed"

func oauthConfig() Config {
	c := validConfig()
	c.AuthorizationCode = ""
	c.Auth = AuthXOAUTH2
	c.OAuth2 = OAuth2Config{
		TokenURL:     "https://login.example.com/tenant/oauth2/v2.0/token",
		ClientID:     "app-id",
		ClientSecret: testClientSecret,
		Scopes:       []string{"https://outlook.office365.com/.default"},
	}
	return c
}

// writeServiceAccount writes a service account key file with a fresh RSA
// key and the fields edit changes.
func writeServiceAccount(t *testing.T, edit func(map[string]any)) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return writeServiceAccountKey(t, key, edit)
}

// writeServiceAccountKey is writeServiceAccount with the given key.
func writeServiceAccountKey(t *testing.T, key *rsa.PrivateKey, edit func(map[string]any)) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa := map[string]any{
		"type":           "service_account",
		"client_email":   "mailer@project.iam.gserviceaccount.com",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"private_key_id": "key-1",
		"token_uri":      "https://oauth2.googleapis.com/token",
	}
	if edit != nil {
		edit(sa)
	}
	data, err := json.Marshal(sa)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateAuth(t *testing.T) {
	t.Parallel()
	goodSA := writeServiceAccount(t, nil)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecSA := writeServiceAccount(t, func(m map[string]any) {
		m["private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))
	})
	oauthClient := writeServiceAccount(t, func(m map[string]any) { m["type"] = "authorized_user" })
	noKey := writeServiceAccount(t, func(m map[string]any) { m["private_key"] = "not a key" })
	noTokenURI := writeServiceAccount(t, func(m map[string]any) { delete(m, "token_uri") })
	notJSON := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(notJSON, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	google := func(c *Config) {
		c.OAuth2 = OAuth2Config{ServiceAccountFile: goodSA, Subject: c.EmailAddress}
	}

	tests := []struct {
		name     string
		edit     func(*Config)
		wantKeys []string // nil: valid
		wantText string   // in the first error
	}{
		{name: "client credentials"},
		{name: "google service account", edit: google},
		{name: "google with token_url override", edit: func(c *Config) {
			google(c)
			c.OAuth2.TokenURL = "http://127.0.0.1:4444/oauth2/token"
		}},
		{name: "plain", edit: func(c *Config) { c.Auth, c.OAuth2, c.AuthorizationCode = AuthPlain, OAuth2Config{}, "pw" }},
		{name: "login", edit: func(c *Config) { c.Auth, c.OAuth2, c.AuthorizationCode = AuthLogin, OAuth2Config{}, "pw" }},
		{name: "unknown mechanism", edit: func(c *Config) { c.Auth = "cram-md5" }, wantKeys: []string{"smtp.auth"}, wantText: "plain, login or xoauth2"},
		{name: "plain without a code", edit: func(c *Config) { c.Auth, c.OAuth2 = AuthPlain, OAuth2Config{} },
			wantKeys: []string{"smtp.authorization_code"}, wantText: "smtp.auth is plain"},
		{name: "oauth2 keys without xoauth2", edit: func(c *Config) { c.Auth, c.AuthorizationCode = "", "pw" },
			wantKeys: []string{"smtp.auth"}, wantText: "smtp.oauth2 is not used"},
		{name: "xoauth2 without oauth2", edit: func(c *Config) { c.OAuth2 = OAuth2Config{} },
			wantKeys: []string{"smtp.oauth2"}, wantText: "token_url, client_id"},
		{name: "no token_url", edit: func(c *Config) { c.OAuth2.TokenURL = "" },
			wantKeys: []string{"smtp.oauth2.token_url"}, wantText: "login.microsoftonline.com"},
		{name: "token_url not a URL", edit: func(c *Config) { c.OAuth2.TokenURL = "login.example.com/token" },
			wantKeys: []string{"smtp.oauth2.token_url"}, wantText: "not an http(s) URL"},
		{name: "token_url plain http to another machine", edit: func(c *Config) { c.OAuth2.TokenURL = "http://login.example.com/token" },
			wantKeys: []string{"smtp.oauth2.token_url"}, wantText: "unencrypted"},
		{name: "token_url with credentials", edit: func(c *Config) { c.OAuth2.TokenURL = "https://app:" + testClientSecret + "@login.example.com/token" },
			wantKeys: []string{"smtp.oauth2.token_url"}, wantText: "must not hold credentials"},
		{name: "token_url plain http on loopback", edit: func(c *Config) { c.OAuth2.TokenURL = "http://127.0.0.1:4444/oauth2/token" }},
		{name: "no client_id", edit: func(c *Config) { c.OAuth2.ClientID = "" }, wantKeys: []string{"smtp.oauth2.client_id"}},
		{name: "no client_secret", edit: func(c *Config) { c.OAuth2.ClientSecret = "" },
			wantKeys: []string{"smtp.oauth2.client_secret"}, wantText: "GATEWAY_SMTP__OAUTH2__CLIENT_SECRET"},
		{name: "no scopes", edit: func(c *Config) { c.OAuth2.Scopes = nil }, wantKeys: []string{"smtp.oauth2.scopes"}},
		{name: "client_auth post", edit: func(c *Config) { c.OAuth2.ClientAuth = "post" }},
		{name: "client_auth unknown", edit: func(c *Config) { c.OAuth2.ClientAuth = "client_secret_jwt" },
			wantKeys: []string{"smtp.oauth2.client_auth"}, wantText: "basic"},
		{name: "scope with a space", edit: func(c *Config) { c.OAuth2.Scopes = []string{"a b"} },
			wantKeys: []string{"smtp.oauth2.scopes"}, wantText: "one scope per entry"},
		{name: "subject with client credentials", edit: func(c *Config) { c.OAuth2.Subject = "x@example.com" },
			wantKeys: []string{"smtp.oauth2.subject"}},
		{name: "service account and client credentials", edit: func(c *Config) { c.OAuth2.ServiceAccountFile, c.OAuth2.Subject = goodSA, "x@example.com" },
			wantKeys: []string{"smtp.oauth2"}, wantText: "not both"},
		{name: "service account without subject", edit: func(c *Config) { google(c); c.OAuth2.Subject = "" },
			wantKeys: []string{"smtp.oauth2.subject"}},
		{name: "service account file missing", edit: func(c *Config) { google(c); c.OAuth2.ServiceAccountFile = filepath.Join(t.TempDir(), "absent.json") },
			wantKeys: []string{"smtp.oauth2.service_account_file"}, wantText: "cannot read"},
		{name: "service account file not JSON", edit: func(c *Config) { google(c); c.OAuth2.ServiceAccountFile = notJSON },
			wantKeys: []string{"smtp.oauth2.service_account_file"}, wantText: "not JSON"},
		{name: "an OAuth client file", edit: func(c *Config) { google(c); c.OAuth2.ServiceAccountFile = oauthClient },
			wantKeys: []string{"smtp.oauth2.service_account_file"}, wantText: `"authorized_user"`},
		{name: "service account without a PEM key", edit: func(c *Config) { google(c); c.OAuth2.ServiceAccountFile = noKey },
			wantKeys: []string{"smtp.oauth2.service_account_file"}, wantText: "not a PEM key"},
		{name: "service account with an ECDSA key", edit: func(c *Config) { google(c); c.OAuth2.ServiceAccountFile = ecSA },
			wantKeys: []string{"smtp.oauth2.service_account_file"}, wantText: "not an RSA key"},
		{name: "service account without token_uri", edit: func(c *Config) { google(c); c.OAuth2.ServiceAccountFile = noTokenURI },
			wantKeys: []string{"smtp.oauth2.service_account_file"}, wantText: "smtp.oauth2.token_url"},
		{name: "xoauth2 in plaintext to another machine", edit: func(c *Config) { c.Security = SecurityNone },
			wantKeys: []string{"smtp.security"}, wantText: "access token"},
		{name: "xoauth2 in plaintext to loopback", edit: func(c *Config) { c.Security, c.Host = SecurityNone, "127.0.0.1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := oauthConfig()
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			errs := cfg.Validate()
			if len(errs) != len(tt.wantKeys) {
				t.Fatalf("Validate() = %v, want errors for %v", errs, tt.wantKeys)
			}
			for i, err := range errs {
				msg := err.Error()
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Errorf("error %v does not match sdk.ErrInvalidArgument", err)
				}
				if !strings.HasPrefix(msg, tt.wantKeys[i]+": ") {
					t.Errorf("error %q does not name %s", msg, tt.wantKeys[i])
				}
				if strings.Contains(msg, testClientSecret) || strings.Contains(msg, "PRIVATE KEY") {
					t.Errorf("error %q contains a secret", msg)
				}
			}
			if tt.wantText != "" && !strings.Contains(errs[0].Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", errs[0], tt.wantText)
			}
		})
	}
}

func TestAuthWarnings(t *testing.T) {
	t.Parallel()
	cfg := oauthConfig()
	cfg.AuthorizationCode = "left-over"
	warns := cfg.Warnings()
	if len(warns) != 1 || !strings.Contains(warns[0], "smtp.authorization_code is ignored") || strings.Contains(warns[0], "left-over") {
		t.Errorf("Warnings() = %q, want one saying the authorization code is ignored, without it", warns)
	}

	cfg = oauthConfig()
	cfg.OAuth2 = OAuth2Config{ServiceAccountFile: writeServiceAccount(t, nil), Subject: "someone-else@example.com"}
	warns = cfg.Warnings()
	if len(warns) != 1 || !strings.Contains(warns[0], "someone-else@example.com") {
		t.Errorf("Warnings() = %q, want one naming the subject that is not the XOAUTH2 user", warns)
	}
}

// fakeClock is a settable clock for the token cache.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingGrant hands out numbered tokens valid for lifetime from the
// fake clock's now; lifetime 0 means no expires_in. Its fetches can be held.
type countingGrant struct {
	clock    *fakeClock
	lifetime time.Duration
	fetches  atomic.Int32
	hold     chan struct{} // nil: answer at once
}

func (g *countingGrant) fetch(ctx context.Context) (*oauth2.Token, error) {
	n := g.fetches.Add(1)
	if g.hold != nil {
		select {
		case <-g.hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	tok := &oauth2.Token{AccessToken: fmt.Sprintf("token-%d", n)}
	if g.lifetime > 0 {
		tok.Expiry = g.clock.Now().Add(g.lifetime)
	}
	return tok, nil
}

func (g *countingGrant) describe() string { return "test grant" }
func (g *countingGrant) fix() string      { return "fix the test" }
func (g *countingGrant) endpoint() string { return "https://token.test/" }

// waitFetches waits until the background fetch that get may have started
// has stored its token: get of a token that is still fresh never blocks.
func waitFetches(t *testing.T, c *tokens, g *countingGrant, want int32) {
	t.Helper()
	for range 1000 {
		c.mu.Lock()
		idle := c.inflight == nil
		c.mu.Unlock()
		if idle && g.fetches.Load() == want {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("fetches = %d, want %d", g.fetches.Load(), want)
}

func TestTokenRefreshTiming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		lifetime time.Duration
		// steps advance the clock by after, call get and expect the token
		// it returns and the number of fetches once any background fetch ended.
		steps []struct {
			after   time.Duration
			token   string
			fetches int32
		}
	}{
		{
			// An hour-long token (Microsoft, Google): refreshed in the
			// background 5 minutes before it expires, never waited for.
			name: "one hour", lifetime: time.Hour,
			steps: []struct {
				after   time.Duration
				token   string
				fetches int32
			}{
				{0, "token-1", 1},
				{54 * time.Minute, "token-1", 1},          // 6 min left: kept
				{time.Minute + time.Second, "token-1", 2}, // 4:59 left: still used, refresh starts
				{0, "token-2", 2},                         // the refreshed one
				{59 * time.Minute, "token-2", 3},          // its own refresh window
			},
		},
		{
			// A short token: lead times scale down (a quarter, a tenth).
			name: "eight seconds", lifetime: 8 * time.Second,
			steps: []struct {
				after   time.Duration
				token   string
				fetches int32
			}{
				{0, "token-1", 1},
				{5 * time.Second, "token-1", 1},         // 3 s left, refresh at 2 s left
				{1500 * time.Millisecond, "token-1", 2}, // 1.5 s left: used, refreshed behind
				{0, "token-2", 2},
				{8 * time.Second, "token-3", 3}, // token-2 expired: waited for
			},
		},
		{
			// No expires_in: used for unknownLifetime from its fetch.
			name: "no expires_in", lifetime: 0,
			steps: []struct {
				after   time.Duration
				token   string
				fetches int32
			}{
				{0, "token-1", 1},
				{3 * time.Minute, "token-1", 1},
				{unknownLifetime, "token-2", 2}, // past the assumed lifetime: waited for
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := &fakeClock{now: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
			g := &countingGrant{clock: clock, lifetime: tt.lifetime}
			c := newTokens(g, "", clock.Now)
			defer c.close()
			for i, step := range tt.steps {
				clock.Advance(step.after)
				tok, _, err := c.get(context.Background())
				if err != nil {
					t.Fatalf("step %d: get: %v", i, err)
				}
				if tok.value != step.token {
					t.Errorf("step %d: got %s, want %s", i, tok.value, step.token)
				}
				waitFetches(t, c, g, step.fetches)
			}
		})
	}
}

func TestTokenConcurrentCallersShareOneFetch(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Now()}
	g := &countingGrant{clock: clock, lifetime: time.Hour, hold: make(chan struct{})}
	c := newTokens(g, "", clock.Now)
	defer c.close()
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() {
			tok, _, err := c.get(context.Background())
			if err == nil {
				got[i] = tok.value
			}
		})
	}
	// Let every caller reach the wait before the endpoint answers.
	for g.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(g.hold)
	wg.Wait()
	for i, v := range got {
		if v != "token-1" {
			t.Errorf("caller %d got %q, want token-1", i, v)
		}
	}
	if n := g.fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

func TestTokenInvalidate(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Now()}
	g := &countingGrant{clock: clock, lifetime: time.Hour}
	c := newTokens(g, "", clock.Now)
	defer c.close()
	first, _, _ := c.get(context.Background())
	c.invalidate(first)
	second, fresh, err := c.get(context.Background())
	if err != nil || second.value != "token-2" || !fresh {
		t.Fatalf("after invalidate: %v, fresh %v, %v; want a freshly fetched token-2", second, fresh, err)
	}
	// A late invalidate of the old token must not drop the new one.
	c.invalidate(first)
	third, fresh, _ := c.get(context.Background())
	if third.value != "token-2" || fresh {
		t.Errorf("stale invalidate dropped the new token: got %s (fresh %v)", third.value, fresh)
	}
}

func TestTokenCallerDeadline(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Now()}
	g := &countingGrant{clock: clock, lifetime: time.Hour, hold: make(chan struct{})}
	c := newTokens(g, "", clock.Now)
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := c.get(ctx)
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageToken || !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("get with a slow endpoint = %v, want a temporary token-stage error", err)
	}
	if !strings.Contains(err.Error(), "https://token.test/") {
		t.Errorf("error %q does not name the endpoint", err)
	}
	// The fetch goes on for the next caller.
	close(g.hold)
	tok, _, err := c.get(context.Background())
	if err != nil || tok.value != "token-1" {
		t.Errorf("next get = %v, %v; want token-1 from the same fetch", tok, err)
	}
}

// tokenEndpoint is a real HTTP token endpoint answering with status, content
// type and body, counting requests; it records the last request's form.
func tokenEndpoint(t *testing.T, status int, contentType, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestTokenEndpointFailures(t *testing.T) {
	t.Parallel()
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		return "http://" + addr + "/token"
	}()
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		url         string // instead of the test server
		temporary   bool
		want        []string
	}{
		{
			name: "wrong client secret", status: 401, contentType: "application/json",
			body: `{"error":"invalid_client","error_description":"Client authentication failed (secret ` + testClientSecret + ` is wrong)."}`,
			want: []string{"HTTP 401 invalid_client", "Client authentication failed", "smtp.oauth2.client_secret", "[client secret]"},
		},
		{
			name: "scope refused", status: 400, contentType: "application/json",
			body: `{"error":"invalid_scope","error_description":"The requested scope is invalid.\r\nInjected: header"}`,
			want: []string{"HTTP 400 invalid_scope", "invalid. Injected", "smtp.oauth2.scopes"},
		},
		{
			name: "endpoint down", url: closed, temporary: true,
			want: []string{"cannot reach the token endpoint", "connection refused"},
		},
		{
			name: "endpoint in trouble", status: 503, contentType: "text/html", body: "<html>maintenance</html>", temporary: true,
			want: []string{"HTTP 503 with text/html instead of JSON", "retried"},
		},
		{
			name: "an HTML page", status: 200, contentType: "text/html", body: "<html><body>Sign in</body></html>",
			want: []string{"answered HTTP 200 with text/html instead of JSON, not a token", "token_url is the token endpoint"},
		},
		{
			name: "JSON without access_token", status: 200, contentType: "application/json", body: `{"token_type":"Bearer"}`,
			want: []string{"answered HTTP 200, not a token", "token_url is the token endpoint"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := tt.url
			if url == "" {
				srv, _ := tokenEndpoint(t, tt.status, tt.contentType, tt.body)
				url = srv.URL + "/token"
			}
			cfg := oauthConfig()
			cfg.OAuth2.TokenURL = url
			g, errs := cfg.OAuth2.check()
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			c := newTokens(g, testClientSecret, time.Now)
			defer c.close()
			_, _, err := c.get(context.Background())
			var se *StageError
			if !errors.As(err, &se) || se.Stage != StageToken {
				t.Fatalf("get = %v, want a token-stage error", err)
			}
			if se.Temporary != tt.temporary {
				t.Errorf("Temporary = %v, want %v (%v)", se.Temporary, tt.temporary, err)
			}
			msg := err.Error()
			for _, w := range append(tt.want, url) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, testClientSecret) || strings.ContainsAny(msg, "\r\n") || strings.Contains(msg, "<html") {
				t.Errorf("error %q leaks the secret, a line break or the body", msg)
			}
		})
	}
}

func TestTokenWithoutExpiresIn(t *testing.T) {
	t.Parallel()
	srv, n := tokenEndpoint(t, 200, "application/json", `{"access_token":"opaque-1","token_type":"Bearer"}`)
	cfg := oauthConfig()
	cfg.OAuth2.TokenURL = srv.URL
	g, _ := cfg.OAuth2.check()
	clock := &fakeClock{now: time.Now()}
	c := newTokens(g, testClientSecret, clock.Now)
	defer c.close()
	tok, fresh, err := c.get(context.Background())
	if err != nil || tok.known || !fresh {
		t.Fatalf("get = %+v, %v, %v", tok, fresh, err)
	}
	if detail := c.detail(tok, fresh); !strings.Contains(detail, "no expires_in") || strings.Contains(detail, "opaque-1") {
		t.Errorf("detail %q should say expires_in is missing and never show the token", detail)
	}
	clock.Advance(unknownLifetime)
	if _, _, err := c.get(context.Background()); err != nil || n.Load() != 2 {
		t.Errorf("after the assumed lifetime: %v, %d requests; want a second fetch", err, n.Load())
	}
}

// A token endpoint that does not answer fails the send when the send's own
// deadline ends, naming the endpoint, as a temporary failure.
func TestTokenEndpointSlow(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	cfg := oauthConfig()
	cfg.OAuth2.TokenURL = srv.URL + "/token"
	g, _ := cfg.OAuth2.check()
	c := newTokens(g, testClientSecret, time.Now)
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := c.get(ctx)
	var se *StageError
	if !errors.As(err, &se) || se.Stage != StageToken || !se.Temporary ||
		!strings.Contains(err.Error(), "deadline exceeded while waiting for the token endpoint "+srv.URL+"/token") {
		t.Errorf("get with a silent endpoint = %v, want a temporary token-stage error naming the endpoint", err)
	}
}
