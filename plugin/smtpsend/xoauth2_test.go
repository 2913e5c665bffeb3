package smtpsend

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
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
}

func newIssuer(t testing.TB) *issuer {
	iss := &issuer{revoked: map[string]bool{}}
	iss.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != "app-id" || secret != testClientSecret || r.PostFormValue("grant_type") != "client_credentials" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"Client authentication failed."}`))
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		tok := "at-" + hex.EncodeToString(b)
		iss.mu.Lock()
		iss.issued = append(iss.issued, tok)
		iss.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
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
