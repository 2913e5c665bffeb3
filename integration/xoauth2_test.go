package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
)

// xoauth2Scope is the scope the test mail provider asks of a token.
const xoauth2Scope = "smtp.send"

// xoauth2Config is a gateway config that signs in to the SMTP server on
// port with XOAUTH2, tokens coming from h for the client id and secret.
func xoauth2Config(srv *smtptest.Server, h *hydraServer, id, secret string) string {
	observed.secret(secret)
	cfg := gatewayConfig(hostOptions{enabled: true, cooldown: "0s", smtpPort: srv.Port, caFile: srv.PKI.CAFile})
	oauth := fmt.Sprintf("  ca_file: %s\n  auth: xoauth2\n  oauth2:\n    token_url: %s\n    client_id: %s\n    client_secret: %s\n    scopes: [%s]\n",
		srv.PKI.CAFile, h.TokenURL(), id, secret, xoauth2Scope)
	return strings.Replace(cfg, "  ca_file: "+srv.PKI.CAFile+"\n", oauth, 1)
}

// The gateway signs in to a mail provider that takes OAuth2 only, as
// Microsoft 365 and Google Workspace do: a real Ory Hydra issues the
// client-credentials tokens, and the SMTP server takes AUTH XOAUTH2 only
// with a token Hydra's introspection calls active with the scope. Through
// real Kratos, host and plugin: a recovery mail goes out and its password
// logs in; a token revoked in Hydra is refused, fetched again and the next
// mail goes out; a wrong client secret sends nothing, names the endpoint's
// answer and the key to fix, and Kratos keeps the message until a reload
// with the right secret lets its retry through, exactly once.
func TestXOAUTH2Journeys(t *testing.T) {
	h := startHydra(t)
	id, secret := h.createClient(t, xoauth2Scope)
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: h.xoauth2Validator(t, env.smtpUser, xoauth2Scope)})
	host, stop := runHostWith(t, writeConfig(t, xoauth2Config(srv, h, id, secret)))
	t.Cleanup(stop)
	received := func(to string) []smtptest.Received { return receivedBy(srv, to) }

	// A recovery over XOAUTH2.
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	waitFor(t, func() bool { return len(received(email)) > 0 }, "the recovery mail at the XOAUTH2 server")
	temp := temporaryPassword(t, mail{Subject: "recovery", Text: textPart(t, received(email)[0].Data)})
	if status, _ := login(t, email, temp); status != http.StatusOK {
		t.Errorf("login with the temporary password sent over XOAUTH2: HTTP %d, want 200", status)
	}
	st := srv.State()
	if len(st.Tokens) != 1 || st.AuthFailed != 0 {
		t.Fatalf("server saw tokens %d, refused logins %d; want 1 accepted token", len(st.Tokens), st.AuthFailed)
	}

	// Revoked in Hydra: the pooled session is gone too (the provider
	// dropped it), so the next mail signs in again, is refused, and goes
	// out with a new token.
	first := st.Tokens[0]
	h.revokeToken(t, id, secret, first)
	srv.Kick()
	other := uniqueEmail(t)
	createIdentity(t, other, oldPassword)
	startRecovery(t, other)
	waitFor(t, func() bool { return len(received(other)) > 0 }, "the mail after the revocation")
	st = srv.State()
	if len(st.Tokens) != 3 || st.Tokens[1] != first || st.Tokens[2] == first || st.AuthFailed != 1 {
		t.Errorf("after the revocation the server saw %d tokens (second the revoked one: %v, third new: %v) and %d refusals; want the revoked one refused once, then a new one",
			len(st.Tokens), len(st.Tokens) > 1 && st.Tokens[1] == first, len(st.Tokens) > 2 && st.Tokens[2] != first, st.AuthFailed)
	}
	if active, _, err := h.introspect(t.Context(), st.Tokens[len(st.Tokens)-1]); err != nil || !active {
		t.Errorf("the new token: active %v, %v", active, err)
	}
	if n := len(received(other)); n != 1 {
		t.Errorf("mails after the revocation = %d, want 1", n)
	}

	// A wrong client secret: nothing is sent, the log names Hydra's answer
	// and the key; Kratos (or the outbox) keeps the message and retries it.
	edit(t, host, "client_secret: "+secret, "client_secret: wrong-"+secret, "applied")
	srv.Kick()
	third := uniqueEmail(t)
	thirdID := createIdentity(t, third, oldPassword).ID
	startRecovery(t, third)
	waitRetried(t, host, third, thirdID)
	if n := len(received(third)); n != 0 {
		t.Fatalf("%d mails went out with a wrong client secret", n)
	}
	logs := host.String()
	for _, want := range []string{"HTTP 401 invalid_client", "smtp.oauth2.client_secret", h.TokenURL()} {
		if !strings.Contains(logs, want) {
			t.Errorf("the host's log does not say %q", want)
		}
	}
	if strings.Contains(logs, "wrong-"+secret) {
		t.Error("the host's log holds the client secret")
	}
	edit(t, host, "client_secret: wrong-"+secret, "client_secret: "+secret, "applied")
	waitFor(t, func() bool { return len(received(third)) > 0 }, "Kratos's retry after the fix")
	waitFor(t, func() bool {
		msgs := courierMessages(t, third)
		return len(msgs) == 1 && msgs[0].Status == "sent"
	}, "Kratos marking the message sent")
	if n := len(received(third)); n != 1 {
		t.Errorf("mails after the fix = %d, want exactly 1", n)
	}
	temp = temporaryPassword(t, mail{Subject: "recovery", Text: textPart(t, received(third)[0].Data)})
	if status, _ := login(t, third, temp); status != http.StatusOK {
		t.Errorf("login with the password of the retried mail: HTTP %d, want 200", status)
	}
}

// `gateway smtp test` shows where the token came from and when it expires,
// never the token; with a wrong secret it stops at the token stage.
func TestXOAUTH2SMTPTest(t *testing.T) {
	h := startHydra(t)
	id, secret := h.createClient(t, xoauth2Scope)
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: h.xoauth2Validator(t, env.smtpUser, xoauth2Scope)})

	code, out := runGateway(t, "smtp", "test", "--config", writeConfig(t, xoauth2Config(srv, h, id, secret)), "--to", "probe@example.org")
	if code != 0 {
		t.Fatalf("smtp test: exit %d\n%s", code, out)
	}
	tokenLine := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "token ") {
			tokenLine = line
		}
	}
	for _, want := range []string{"client credentials of " + id, h.TokenURL(), "scopes " + xoauth2Scope, "fetched", "expires", "ok"} {
		if !strings.Contains(tokenLine, want) {
			t.Errorf("token line %q does not say %q\n%s", tokenLine, want, out)
		}
	}
	if !strings.Contains(out, "AUTH XOAUTH2 as "+env.smtpUser) || !strings.Contains(out, "warning: smtp.authorization_code is ignored") {
		t.Errorf("smtp test output lacks the XOAUTH2 sign-in or the warning about the ignored code:\n%s", out)
	}
	for _, tok := range srv.State().Tokens {
		if strings.Contains(out, tok) {
			t.Error("smtp test printed the access token")
		}
	}

	sessions := srv.State().Sessions
	code, out = runGateway(t, "smtp", "test", "--config", writeConfig(t, xoauth2Config(srv, h, id, "wrong-"+secret)), "--to", "probe@example.org")
	if code == 0 || !strings.Contains(out, "HTTP 401 invalid_client") || !strings.Contains(out, "FAILED") || strings.Contains(out, "wrong-"+secret) {
		t.Errorf("smtp test with a wrong secret: exit %d, want a failed token stage naming Hydra's answer without the secret:\n%s", code, out)
	}
	if srv.State().Sessions != sessions {
		t.Error("smtp test with a wrong secret opened an SMTP session")
	}
}

// Tokens are replaced before they expire: with Hydra issuing 8-second
// tokens, a sign-in every second for 20 seconds (the server drops the
// pooled session after each mail) never presents an expired token, so
// Hydra's introspection refuses none, and the mails span several tokens.
func TestXOAUTH2TokensRefreshedBeforeExpiry(t *testing.T) {
	h := startHydraWith(t, hydraOptions{AccessTokenTTL: 8 * time.Second})
	id, secret := h.createClient(t, xoauth2Scope)
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, XOAUTH2: h.xoauth2Validator(t, env.smtpUser, xoauth2Scope)})
	host, stop := runHostWith(t, writeConfig(t, xoauth2Config(srv, h, id, secret)))
	t.Cleanup(stop)

	to := uniqueEmail(t)
	const mails = 20
	for i := range mails {
		body, err := json.Marshal(map[string]any{
			"recipient": to, "template_type": "verification_code_valid", "message_type": "email",
			"subject": "Please verify your email address", "body": fmt.Sprintf("Your code is %06d\n", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		if status, msg := courierOutcome(t, host, "Bearer "+env.apiKey, body); status != http.StatusOK {
			t.Fatalf("mail %d: HTTP %d %s", i, status, msg)
		}
		srv.Kick()
		time.Sleep(time.Second)
	}
	st := srv.State()
	distinct := map[string]bool{}
	for _, tok := range st.Tokens {
		distinct[tok] = true
	}
	if len(st.Mails) != mails || st.AuthFailed != 0 || len(distinct) < 3 {
		t.Errorf("%d mails, %d refused sign-ins, %d distinct tokens over %d sign-ins; want %d mails, none refused, 3 tokens or more",
			len(st.Mails), st.AuthFailed, len(distinct), len(st.Tokens), mails)
	}
}
