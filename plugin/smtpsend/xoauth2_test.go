package smtpsend

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// issuer is a client-credentials token endpoint over real HTTP that hands
// out random tokens and remembers which ones it revoked, so that an SMTP
// server can ask it as Microsoft's asks Entra ID. The integration suite does
// the same against a real Ory Hydra.
type issuer struct {
	srv *httptest.Server

	mu      sync.Mutex
	issued  []string
	revoked map[string]bool
	methods []string // how each request authenticated the client: basic or post
}

func newIssuer(t testing.TB) *issuer {
	iss := &issuer{revoked: map[string]bool{}}
	iss.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		method := "basic"
		if !ok {
			id, secret, method = r.PostFormValue("client_id"), r.PostFormValue("client_secret"), "post"
		}
		iss.mu.Lock()
		iss.methods = append(iss.methods, method)
		iss.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if id != "app-id" || secret != testClientSecret || r.PostFormValue("grant_type") != "client_credentials" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"Client authentication failed."}`))
			return
		}
		if r.PostFormValue("scope") == "not-granted" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_scope","error_description":"The requested scope is not granted to this client."}`))
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		tok := "at-" + hex.EncodeToString(b)
		iss.mu.Lock()
		iss.issued = append(iss.issued, tok)
		iss.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": 3600, "scope": r.PostFormValue("scope")})
	}))
	t.Cleanup(iss.srv.Close)
	return iss
}

func (iss *issuer) count() int {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return len(iss.issued)
}

// revokeAll revokes every token issued so far.
func (iss *issuer) revokeAll() {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	for _, tok := range iss.issued {
		iss.revoked[tok] = true
	}
}

// validate accepts testUser with a token this issuer issued and did not revoke.
func (iss *issuer) validate(user, token string) error {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if user != testUser || iss.revoked[token] || !slices.Contains(iss.issued, token) {
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3}, Message: "Authentication unsuccessful"}
	}
	return nil
}

func xoauth2Config(srv *smtptest.Server, iss *issuer) Config {
	cfg := config(srv, SecurityTLS)
	cfg.AuthorizationCode = ""
	cfg.Auth = AuthXOAUTH2
	cfg.OAuth2 = OAuth2Config{
		TokenURL:     iss.srv.URL + "/token",
		ClientID:     "app-id",
		ClientSecret: testClientSecret,
		Scopes:       []string{"https://outlook.office365.com/.default"},
	}
	return cfg
}

// assertNoToken fails if any issued token or the client secret appears in text.
func assertNoToken(t *testing.T, iss *issuer, text string) {
	t.Helper()
	iss.mu.Lock()
	defer iss.mu.Unlock()
	for _, tok := range append([]string{testClientSecret}, iss.issued...) {
		if strings.Contains(text, tok) {
			t.Errorf("%q holds a token or the client secret", text)
		}
	}
}

func traceText(steps []sdk.SMTPStep) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString(s.Stage + " " + s.Detail + " " + s.Err + "\n")
	}
	return b.String()
}

func TestXOAUTH2Send(t *testing.T) {
	t.Parallel()
	for _, errorChallenge := range []bool{false, true} {
		name := "535 at once"
		if errorChallenge {
			name = "334 JSON error first, as Gmail and Microsoft 365"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			iss := newIssuer(t)
			srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: iss.validate, XOAUTH2ErrorChallenge: errorChallenge})
			s := newSender(t, xoauth2Config(srv, iss))
			m := Mail{To: "user@example.org", Subject: "s", Text: "t"}

			// The first mail fetches a token, the second reuses it on its
			// own fresh connection.
			for i, want := range []string{"fetched", "cached"} {
				res, err := s.SendTraced(testCtx(t, 5*time.Second), m)
				if err != nil {
					t.Fatalf("send %d: %v", i+1, err)
				}
				if res.Trace[0].Stage != StageToken || !strings.Contains(res.Trace[0].Detail, want) ||
					!strings.Contains(res.Trace[0].Detail, iss.srv.URL) || !strings.Contains(res.Trace[0].Detail, "expires") {
					t.Errorf("send %d: first step %+v, want a token step saying %s, the endpoint and the expiry", i+1, res.Trace[0], want)
				}
				if auth := findStep(res.Trace, StageAuth); auth == nil || auth.Detail != "AUTH XOAUTH2 as "+testUser {
					t.Errorf("send %d: auth step %+v, want AUTH XOAUTH2 as %s", i+1, auth, testUser)
				}
				assertNoToken(t, iss, traceText(res.Trace))
			}
			if n := iss.count(); n != 1 {
				t.Errorf("token requests = %d, want 1 for two mails", n)
			}

			// A revoked token is refused: the sender drops it, fetches a new
			// one and signs in once more, on a new connection.
			iss.revokeAll()
			res, err := s.SendTraced(testCtx(t, 5*time.Second), m)
			if err != nil {
				t.Fatalf("send after revocation: %v", err)
			}
			if n := iss.count(); n != 2 {
				t.Errorf("token requests = %d, want 2", n)
			}
			st := srv.State()
			if len(st.Mails) != 3 || st.AuthFailed != 1 {
				t.Errorf("server saw %d mails and %d refused logins, want 3 and 1", len(st.Mails), st.AuthFailed)
			}
			var stages []string
			for _, step := range res.Trace {
				stages = append(stages, step.Stage)
			}
			if got := strings.Join(stages, ","); !strings.HasPrefix(got, "token,connect,tls,greeting,hello,auth,token,connect,") {
				t.Errorf("stages %s, want a failed auth, then a new token and connection", got)
			}
			assertNoToken(t, iss, traceText(res.Trace))
		})
	}
}

func TestXOAUTH2Refusals(t *testing.T) {
	t.Parallel()
	t.Run("every token refused", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		refuse := func(string, string) error {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 139}, Message: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox"}
		}
		srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: refuse})
		s := newSender(t, xoauth2Config(srv, iss))
		_, err := s.Send(testCtx(t, 5*time.Second), Mail{To: "user@example.org", Subject: "s", Text: "t"})
		var se *StageError
		if !errors.As(err, &se) || se.Stage != StageAuth || !errors.Is(err, sdk.ErrRejected) {
			t.Fatalf("send = %v, want a final auth-stage error", err)
		}
		for _, want := range []string{"refused the access token for \"" + testUser + "\"", "5.7.139", "fresh from " + iss.srv.URL, "SMTP.SendAsApp"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		assertNoToken(t, iss, err.Error())
		if n, st := iss.count(), srv.State(); n != 2 || st.AuthFailed != 2 || len(st.Mails) != 0 {
			t.Errorf("%d token requests, %d refused logins, %d mails; want 2, 2, 0", n, st.AuthFailed, len(st.Mails))
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: iss.validate})
		cfg := xoauth2Config(srv, iss)
		cfg.OAuth2.ClientSecret = "not-the-secret"
		s := newSender(t, cfg)
		res, err := s.SendTraced(testCtx(t, 5*time.Second), Mail{To: "user@example.org", Subject: "s", Text: "t"})
		var se *StageError
		if !errors.As(err, &se) || se.Stage != StageToken || !errors.Is(err, sdk.ErrRejected) {
			t.Fatalf("send = %v (%+v), want a final token-stage error", err, res)
		}
		if !strings.Contains(err.Error(), "HTTP 401 invalid_client") || !strings.Contains(err.Error(), "smtp.oauth2.client_secret") ||
			strings.Contains(err.Error(), "not-the-secret") {
			t.Errorf("error %q should give the endpoint's answer and the keys to check, without the secret", err)
		}
		if len(se.Trace) != 1 || se.Trace[0].Stage != StageToken || se.Trace[0].Err == "" {
			t.Errorf("trace %+v, want the failed token step only", se.Trace)
		}
		if st := srv.State(); st.Sessions != 0 {
			t.Errorf("the SMTP server saw %d sessions, want none without a token", st.Sessions)
		}
	})
	t.Run("server without XOAUTH2", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
		s := newSender(t, xoauth2Config(srv, iss))
		_, err := s.Send(testCtx(t, 5*time.Second), Mail{To: "user@example.org", Subject: "s", Text: "t"})
		if !errors.Is(err, sdk.ErrRejected) || !strings.Contains(err.Error(), "offers AUTH PLAIN, not XOAUTH2") {
			t.Errorf("send = %v, want a final error naming the offered mechanism", err)
		}
		if n := iss.count(); n != 1 {
			t.Errorf("token requests = %d, want 1: a missing mechanism is no reason to fetch again", n)
		}
	})
}

func TestExplicitAuthMechanism(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	m := Mail{To: "user@example.org", Subject: "s", Text: "t"}

	cfg := config(srv, SecurityTLS)
	cfg.Auth = AuthPlain
	res, err := newSender(t, cfg).SendTraced(testCtx(t, 5*time.Second), m)
	if err != nil {
		t.Fatalf("auth: plain: %v", err)
	}
	if auth := findStep(res.Trace, StageAuth); auth == nil || auth.Detail != "AUTH PLAIN as "+testUser {
		t.Errorf("auth step %+v, want AUTH PLAIN", auth)
	}

	cfg.Auth = AuthLogin // the test server offers PLAIN only
	_, err = newSender(t, cfg).Send(testCtx(t, 5*time.Second), m)
	if !errors.Is(err, sdk.ErrRejected) || !strings.Contains(err.Error(), "the server offers AUTH PLAIN; set smtp.auth") {
		t.Errorf("auth: login against a PLAIN-only server = %v, want an error naming what it offers", err)
	}
}

// The client authenticates one way, basic unless client_auth says post, and
// a refusal is reported as the endpoint gave it: no second request the other
// way whose answer would hide the first.
func TestClientAuthMethods(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		clientAuth, scope string
		wantMethod        string
		wantErr           string // "" for a token
	}{
		{clientAuth: "", scope: "mail.send", wantMethod: "basic"},
		{clientAuth: "basic", scope: "mail.send", wantMethod: "basic"},
		{clientAuth: "post", scope: "mail.send", wantMethod: "post"},
		{clientAuth: "", scope: "not-granted", wantMethod: "basic", wantErr: "HTTP 400 invalid_scope (The requested scope is not granted"},
		{clientAuth: "post", scope: "not-granted", wantMethod: "post", wantErr: "HTTP 400 invalid_scope"},
	} {
		t.Run(tt.clientAuth+" "+tt.scope, func(t *testing.T) {
			t.Parallel()
			iss := newIssuer(t)
			cfg := oauthConfig()
			cfg.OAuth2.TokenURL, cfg.OAuth2.ClientAuth, cfg.OAuth2.Scopes = iss.srv.URL, tt.clientAuth, []string{tt.scope}
			g, errs := cfg.OAuth2.check()
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			c := newTokens(g, testClientSecret, time.Now)
			defer c.close()
			_, _, err := c.get(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("get: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("get = %v, want %q", err, tt.wantErr)
			}
			iss.mu.Lock()
			defer iss.mu.Unlock()
			if !slices.Equal(iss.methods, []string{tt.wantMethod}) {
				t.Errorf("requests authenticated %v, want one, %s", iss.methods, tt.wantMethod)
			}
		})
	}
}

func findStep(steps []sdk.SMTPStep, stage string) *sdk.SMTPStep {
	for i := range steps {
		if steps[i].Stage == stage {
			return &steps[i]
		}
	}
	return nil
}

// BenchmarkSendPooledXOAUTH2 is BenchmarkSendPooled signing in with XOAUTH2:
// a pooled connection signs in once and the token is cached, so the two
// should match. BenchmarkSendFreshXOAUTH2 pays the sign-in on every mail,
// but not the token endpoint.
func BenchmarkSendPooledXOAUTH2(b *testing.B) { benchmarkXOAUTH2(b, WithPool(1, time.Minute)) }

func BenchmarkSendFreshXOAUTH2(b *testing.B) { benchmarkXOAUTH2(b) }

func benchmarkXOAUTH2(b *testing.B, opts ...Option) {
	iss := newIssuer(b)
	srv := smtptest.Start(b, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: iss.validate})
	s, err := New(xoauth2Config(srv, iss), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	m := Mail{To: "user@example.org", Subject: "bench", Text: "t"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Send(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
	if n := iss.count(); n != 1 {
		b.Errorf("token requests = %d, want 1", n)
	}
}

// googleEndpoint is a token endpoint that takes the JWT bearer grant the way
// Google's does for a service account (RFC 7523 as Google documents it):
// the assertion must be signed RS256 by the account's key (kid = its
// private_key_id), with iss = client_email, sub = the mailbox, aud = the
// token URL, the scopes in a "scope" claim, and at most an hour between iat
// and exp. Google's endpoint cannot run here, and Hydra's jwt-bearer grant
// differs from it (it wants client authentication, a jti and the scope as
// a form field), so what the plugin sends Google is checked here.
type googleEndpoint struct {
	srv     *httptest.Server
	pub     *rsa.PublicKey
	email   string
	mu      sync.Mutex
	claims  []map[string]any // of each valid assertion
	refused []string         // why assertions were refused
}

func newGoogleEndpoint(t *testing.T, pub *rsa.PublicKey, email string) *googleEndpoint {
	g := &googleEndpoint{pub: pub, email: email}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, why := g.verify(r)
		g.mu.Lock()
		defer g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if why != "" {
			g.refused = append(g.refused, why)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"error":"invalid_grant","error_description":%q}`, why)
			return
		}
		g.claims = append(g.claims, claims)
		_, _ = fmt.Fprintf(w, `{"access_token":"ya29.test-%d","token_type":"Bearer","expires_in":3599}`, len(g.claims))
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *googleEndpoint) verify(r *http.Request) (map[string]any, string) {
	if r.PostFormValue("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		return nil, "grant_type is not jwt-bearer"
	}
	parts := strings.Split(r.PostFormValue("assertion"), ".")
	if len(parts) != 3 {
		return nil, "the assertion is not a JWS"
	}
	decode := func(part string, into any) bool {
		raw, err := base64.RawURLEncoding.DecodeString(part)
		return err == nil && json.Unmarshal(raw, into) == nil
	}
	var header struct{ Alg, Kid string }
	var claims map[string]any
	if !decode(parts[0], &header) || !decode(parts[1], &claims) {
		return nil, "the assertion does not decode"
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, "the signature does not decode"
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if header.Alg != "RS256" || header.Kid != "key-1" || rsa.VerifyPKCS1v15(g.pub, crypto.SHA256, digest[:], sig) != nil {
		return nil, "the signature does not verify with the service account's key"
	}
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	now := float64(time.Now().Unix())
	switch {
	case claims["iss"] != g.email:
		return nil, "iss is not the service account"
	case claims["aud"] != g.srv.URL+"/token":
		return nil, "aud is not the token URL"
	case claims["sub"] != testUser:
		return nil, "sub is not the mailbox"
	case claims["scope"] != googleMailScope:
		return nil, "scope is not https://mail.google.com/"
	case iat > now+60 || exp < now || exp-iat > 3600:
		return nil, "iat and exp are not a window of at most an hour around now"
	}
	return claims, ""
}

// A Google service account signs in: the plugin signs the assertion with
// the file's key, gets a token, and sends over XOAUTH2 as the subject.
func TestXOAUTH2GoogleServiceAccount(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const email = "mailer@project.iam.gserviceaccount.com"
	google := newGoogleEndpoint(t, &key.PublicKey, email)
	saFile := writeServiceAccountKey(t, key, func(m map[string]any) { m["token_uri"] = google.srv.URL + "/token" })
	var presented []string
	var mu sync.Mutex
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: func(user, token string) error {
		mu.Lock()
		defer mu.Unlock()
		presented = append(presented, user+" "+token)
		return nil
	}})
	cfg := config(srv, SecurityTLS)
	cfg.AuthorizationCode, cfg.Auth = "", AuthXOAUTH2
	cfg.OAuth2 = OAuth2Config{ServiceAccountFile: saFile, Subject: testUser}
	res, err := newSender(t, cfg).SendTraced(testCtx(t, 5*time.Second), Mail{To: "user@example.org", Subject: "s", Text: "t"})
	if err != nil {
		google.mu.Lock()
		t.Fatalf("send: %v (endpoint refused: %q)", err, google.refused)
	}
	if len(google.claims) != 1 || !slices.Equal(presented, []string{testUser + " ya29.test-1"}) {
		t.Errorf("assertions accepted %d, sign-ins %q; want one, as %s with the token", len(google.claims), presented, testUser)
	}
	if d := res.Trace[0].Detail; !strings.Contains(d, "JWT grant of service account "+email+" for "+testUser) || !strings.Contains(d, googleMailScope) {
		t.Errorf("token step %q, want the service account, the subject and the scope", d)
	}
	if strings.Contains(traceText(res.Trace), "ya29.") {
		t.Error("the trace holds the token")
	}

	// Another key than the file's public one: refused by the endpoint, and
	// the error says which keys to check.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	cfg.OAuth2.ServiceAccountFile = writeServiceAccountKey(t, other, func(m map[string]any) { m["token_uri"] = google.srv.URL + "/token" })
	_, err = newSender(t, cfg).Send(testCtx(t, 5*time.Second), Mail{To: "user@example.org", Subject: "s", Text: "t"})
	if !errors.Is(err, sdk.ErrRejected) || !strings.Contains(err.Error(), "HTTP 400 invalid_grant") ||
		!strings.Contains(err.Error(), "smtp.oauth2.service_account_file") || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("send with a key the endpoint does not know = %v", err)
	}
}
