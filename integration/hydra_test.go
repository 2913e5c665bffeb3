package integration

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gomail "github.com/wneessen/go-mail"
	"golang.org/x/oauth2"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
)

// The parts the XOAUTH2 journeys stand on, without the gateway: a real Ory
// Hydra issues client-credentials tokens, and the test SMTP server takes AUTH
// XOAUTH2 only with a token Hydra's introspection calls active with scope
// smtp.send, sent by go-mail (the plugin's SMTP client) over implicit TLS.
// A revoked token, a token without the scope and a wrong client secret are
// refused where a mail provider and its authorization server refuse them.
func TestHydraXOAUTH2Infrastructure(t *testing.T) {
	const user, scope = "gateway@example.com", "smtp.send"
	h := startHydra(t)
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: h.xoauth2Validator(t, user, scope)})
	id, secret := h.createClient(t, scope)
	cc := h.clientConfig(id, secret, scope)

	tok, err := cc.Token(t.Context())
	if err != nil {
		t.Fatalf("client credentials token: %v", err)
	}
	if !strings.EqualFold(tok.TokenType, "bearer") || tok.Expiry.IsZero() {
		t.Errorf("token type %q, expiry %v; want a bearer token that expires", tok.TokenType, tok.Expiry)
	}
	if err := sendXOAUTH2(t, srv, user, tok.AccessToken, "valid token"); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	if err := sendXOAUTH2(t, srv, "someone-else@example.com", tok.AccessToken, "valid token, another user"); !isAuth535(err) {
		t.Errorf("valid token for another user: err = %v; want 535 5.7.8", err)
	}

	// Revoked in Hydra: introspection turns inactive, the server refuses.
	revoked, err := cc.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if revoked.AccessToken == tok.AccessToken {
		t.Fatal("Hydra issued the same token twice")
	}
	if active, _, err := h.introspect(t.Context(), revoked.AccessToken); err != nil || !active {
		t.Fatalf("before revocation: active %v, %v; want active", active, err)
	}
	h.revokeToken(t, id, secret, revoked.AccessToken)
	if active, _, err := h.introspect(t.Context(), revoked.AccessToken); err != nil || active {
		t.Fatalf("after revocation: active %v, %v; want inactive", active, err)
	}
	if err := sendXOAUTH2(t, srv, user, revoked.AccessToken, "revoked token"); !isAuth535(err) {
		t.Errorf("revoked token: err = %v; want 535 5.7.8", err)
	}

	// A client without smtp.send: Hydra will not grant it the scope, and
	// the token it does get is refused.
	otherID, otherSecret := h.createClient(t, "smtp.read")
	other := h.clientConfig(otherID, otherSecret, scope)
	if _, err := other.Token(t.Context()); !isRetrieveError(err, http.StatusBadRequest, "invalid_scope") {
		t.Errorf("client without %s asking for it: err = %v; want HTTP 400 invalid_scope", scope, err)
	}
	other.Scopes = []string{"smtp.read"}
	readTok, err := other.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if active, got, err := h.introspect(t.Context(), readTok.AccessToken); err != nil || !active || got != "smtp.read" {
		t.Fatalf("smtp.read token: active %v, scope %q, %v; want active, smtp.read", active, got, err)
	}
	if err := sendXOAUTH2(t, srv, user, readTok.AccessToken, "token without smtp.send"); !isAuth535(err) {
		t.Errorf("token without %s: err = %v; want 535 5.7.8", scope, err)
	}

	// A wrong client secret: the token endpoint refuses the client.
	wrong := *cc
	wrong.ClientSecret = secret + "x"
	if _, err := wrong.Token(t.Context()); !isRetrieveError(err, http.StatusUnauthorized, "invalid_client") {
		t.Errorf("wrong client secret: err = %v; want HTTP 401 invalid_client", err)
	}

	st := srv.State()
	if len(st.Mails) != 1 || !strings.Contains(string(st.Mails[0].Data), "Subject: valid token\r\n") {
		t.Errorf("delivered %d mails; want only the one sent with the valid token", len(st.Mails))
	}
	if diff := cmp.Diff([]string{user}, st.Authed); diff != "" {
		t.Errorf("authenticated users (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{tok.AccessToken, tok.AccessToken, revoked.AccessToken, readTok.AccessToken}, st.Tokens); diff != "" {
		t.Errorf("tokens presented (-want +got):\n%s", diff)
	}
	if st.Attempts != 4 || st.AuthFailed != 3 {
		t.Errorf("AUTH attempts %d, refused %d; want 4, 3", st.Attempts, st.AuthFailed)
	}
}

// Hydra's ttl.access_token gives short-lived tokens, for the journeys that
// need a token to expire: expires_in follows it, and once it has passed
// introspection says inactive and the server refuses the token.
func TestHydraShortLivedTokens(t *testing.T) {
	const user, scope, ttl = "gateway@example.com", "smtp.send", 3 * time.Second
	h := startHydraWith(t, hydraOptions{AccessTokenTTL: ttl})
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: h.xoauth2Validator(t, user, scope)})
	id, secret := h.createClient(t, scope)
	cc := h.clientConfig(id, secret, scope)
	start := time.Now()
	tok, err := cc.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// expires_in is whole seconds, so the expiry is within a second of the TTL.
	if left := tok.Expiry.Sub(start); left < ttl-1500*time.Millisecond || left > ttl+time.Second {
		t.Errorf("token expires %v after the request; want about %v", left, ttl)
	}
	if err := sendXOAUTH2(t, srv, user, tok.AccessToken, "fresh token"); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	time.Sleep(time.Until(start.Add(ttl + time.Second)))
	if active, _, err := h.introspect(t.Context(), tok.AccessToken); err != nil || active {
		t.Fatalf("after %v: active %v, %v; want inactive", ttl, active, err)
	}
	if err := sendXOAUTH2(t, srv, user, tok.AccessToken, "expired token"); !isAuth535(err) {
		t.Errorf("expired token: err = %v; want 535 5.7.8", err)
	}
	if n := len(srv.State().Mails); n != 1 {
		t.Errorf("delivered %d mails; want 1", n)
	}
}

// sendXOAUTH2 sends one mail with the given subject from user to srv with
// go-mail's AUTH XOAUTH2 (the token in the password field) over implicit
// TLS, trusting srv's CA.
func sendXOAUTH2(t *testing.T, srv *smtptest.Server, user, token, subject string) error {
	t.Helper()
	caPEM, err := os.ReadFile(srv.PKI.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", srv.PKI.CAFile)
	}
	c, err := gomail.NewClient("127.0.0.1", gomail.WithPort(srv.Port), gomail.WithSSL(),
		gomail.WithTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}),
		gomail.WithSMTPAuth(gomail.SMTPAuthXOAUTH2), gomail.WithUsername(user), gomail.WithPassword(token),
		gomail.WithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m := gomail.NewMsg()
	if err := m.From(user); err != nil {
		t.Fatal(err)
	}
	if err := m.To(uniqueEmail(t)); err != nil {
		t.Fatal(err)
	}
	m.Subject(subject)
	m.SetBodyString(gomail.TypeTextPlain, "sent with an OAuth2 access token\n")
	return c.DialAndSend(m)
}

// isAuth535 says err is go-mail's report of the server's 535 5.7.8 to AUTH
// (it quotes the text: `SMTP AUTH failed: 535 "5.7.8 ..."`).
func isAuth535(err error) bool {
	return err != nil && strings.Contains(err.Error(), "SMTP AUTH failed") &&
		strings.Contains(err.Error(), "535") && strings.Contains(err.Error(), "5.7.8")
}

// isRetrieveError says err is the token endpoint's refusal with this HTTP
// status and OAuth2 error code.
func isRetrieveError(err error, status int, code string) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == status && re.ErrorCode == code
}
