package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	stdmail "net/mail"
	"slices"
	"strings"
	"testing"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
)

// Mailpit does not offer PIPELINING, so this test sends through the real
// host and plugin binaries to a go-smtp server that does, with real TLS and
// AUTH: a recovery through Kratos and pass-through mails go out on one
// pooled connection, each exactly once, and the temporary password logs in.
// That the envelope goes out as one group is shown on the wire by
// plugin/smtpsend's TestPipelinedEnvelopeIsOneWrite.
func TestPipeliningSMTPServer(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, User: env.smtpUser, Password: env.smtpPass})
	h := startHost(t, hostOptions{enabled: true, smtpPort: srv.Port, caFile: srv.PKI.CAFile})

	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	received := func(to string) []smtptest.Received { return receivedBy(srv, to) }
	startRecovery(t, email)
	waitFor(t, func() bool { return len(received(email)) > 0 }, "the recovery mail at the pipelining server")

	const passThrough = 3
	other := uniqueEmail(t)
	for i := range passThrough {
		body, err := json.Marshal(map[string]any{
			"recipient": other, "template_type": "verification_code_valid", "message_type": "email",
			"subject": "Please verify your email address", "body": fmt.Sprintf("Hi, please verify your account with the code %06d\n", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		// One after the other, as Kratos's courier sends: through the
		// outbox too, each is delivered before the next is posted.
		if status, msg := courierOutcome(t, h, "Bearer "+env.apiKey, body); status != http.StatusOK {
			t.Fatalf("pass-through %d: HTTP %d %s", i, status, msg)
		}
	}
	if got := len(received(other)); got != passThrough {
		t.Errorf("pass-through mails received %d, want %d", got, passThrough)
	}
	mails := received(email)
	if len(mails) != 1 {
		t.Fatalf("recovery mails received %d, want exactly 1", len(mails))
	}
	if st := srv.State(); st.Sessions != 1 || len(st.Authed) != 1 {
		t.Errorf("server saw %d sessions and %d logins for %d mails, want 1 and 1: one pooled connection", st.Sessions, len(st.Authed), len(st.Mails))
	}

	temp := temporaryPassword(t, mail{Subject: "recovery", Text: textPart(t, mails[0].Data)})
	if status, _ := login(t, email, temp); status != http.StatusOK {
		t.Errorf("login with the temporary password from the pipelined mail: HTTP %d, want 200", status)
	}
}

// receivedBy lists the mails srv accepted for to.
func receivedBy(srv *smtptest.Server, to string) []smtptest.Received {
	var out []smtptest.Received
	for _, m := range srv.State().Mails {
		if slices.Contains(m.To, to) {
			out = append(out, m)
		}
	}
	return out
}

// textPart decodes the text/plain part of a raw mail.
func textPart(t *testing.T, raw []byte) string {
	t.Helper()
	msg, err := stdmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse mail: %v", err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("mail Content-Type: %v", err)
	}
	decode := func(enc string, r io.Reader) string {
		if strings.EqualFold(enc, "quoted-printable") {
			r = quotedprintable.NewReader(r)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read mail part: %v", err)
		}
		return string(b)
	}
	if !strings.HasPrefix(mediaType, "multipart/") {
		return decode(msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	}
	parts := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := parts.NextRawPart()
		if err != nil {
			t.Fatalf("no text/plain part in the mail: %v", err)
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
			return decode(p.Header.Get("Content-Transfer-Encoding"), p)
		}
	}
}
