package smtpsend

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// testCtx bounds every Send so that a broken deadline cannot hang the suite.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func newSender(t *testing.T, cfg Config) *Sender {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// parsedMail is the part of a received mail the tests look at.
type parsedMail struct {
	fromName, fromAddr string
	to                 string
	subject            string
	messageID          string
	date               time.Time
	contentType        string
	bodies             map[string]string // media type → decoded body
}

func parseMail(t *testing.T, data []byte) parsedMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("received mail does not parse: %v\n%s", err, data)
	}
	var p parsedMail
	from, err := msg.Header.AddressList("From")
	if err != nil || len(from) != 1 {
		t.Fatalf("From %q: %v", msg.Header.Get("From"), err)
	}
	p.fromName, p.fromAddr = from[0].Name, from[0].Address
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 1 {
		t.Fatalf("To %q: %v", msg.Header.Get("To"), err)
	}
	p.to = to[0].Address
	if p.subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		t.Fatalf("Subject: %v", err)
	}
	p.messageID = msg.Header.Get("Message-ID")
	if p.date, err = msg.Header.Date(); err != nil {
		t.Fatalf("Date: %v", err)
	}

	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	p.contentType = mediaType
	p.bodies = map[string]string{}
	if !strings.HasPrefix(mediaType, "multipart/") {
		p.bodies[mediaType] = decodeBody(t, msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
		return p
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return p
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		partType, _, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type: %v", err)
		}
		// multipart.Part already undoes quoted-printable.
		p.bodies[partType] = decodeBody(t, part.Header.Get("Content-Transfer-Encoding"), part)
	}
}

func decodeBody(t *testing.T, encoding string, r io.Reader) string {
	t.Helper()
	if strings.EqualFold(encoding, "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	body, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return strings.TrimRight(string(body), "\r\n")
}

func TestSendDeliversInEachSecurityMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		security string
		server   smtptest.Options
	}{
		{"tls", SecurityTLS, smtptest.Options{Mode: smtptest.ImplicitTLS}},
		{"starttls", SecuritySTARTTLS, smtptest.Options{Mode: smtptest.StartTLS}},
		// Go 1.26 still speaks TLS 1.1 when both sides set MinVersion to
		// TLS 1.0 explicitly; no GODEBUG is needed.
		{"ssl with a TLS 1.1-only server", SecuritySSL, smtptest.Options{Mode: smtptest.ImplicitTLS, LegacyTLS: true}},
		{"ssl with a modern server", SecuritySSL, smtptest.Options{Mode: smtptest.ImplicitTLS}},
		{"none on loopback", SecurityNone, smtptest.Options{Mode: smtptest.Plaintext}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, tt.server)
			s := newSender(t, config(srv, tt.security))

			reply, err := s.Send(testCtx(t, 10*time.Second), Mail{
				To:      "User <user@example.org>",
				Subject: "Recover your account ✓",
				Text:    "Your code is 123456.",
				HTML:    "<p>Your code is <b>123456</b>.</p>",
			})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if !strings.HasPrefix(reply, "250 ") || !strings.Contains(reply, "queued") {
				t.Errorf("reply = %q, want the server's 250 reply to DATA", reply)
			}

			st := srv.State()
			if diff := cmp.Diff([]string{testUser}, st.Authed); diff != "" {
				t.Errorf("authenticated users (-want +got):\n%s", diff)
			}
			if len(st.Mails) != 1 {
				t.Fatalf("server received %d mails, want 1", len(st.Mails))
			}
			got := st.Mails[0]
			if got.From != testUser || !cmp.Equal(got.To, []string{"user@example.org"}) {
				t.Errorf("envelope = %q → %q, want %q → [user@example.org]", got.From, got.To, testUser)
			}
			p := parseMail(t, got.Data)
			want := map[string]string{
				"text/plain": "Your code is 123456.",
				"text/html":  "<p>Your code is <b>123456</b>.</p>",
			}
			if p.fromName != "Example Support" || p.fromAddr != testUser {
				t.Errorf("From = %q <%s>, want \"Example Support\" <%s>", p.fromName, p.fromAddr, testUser)
			}
			if p.to != "user@example.org" {
				t.Errorf("To = %q, want user@example.org", p.to)
			}
			if p.subject != "Recover your account ✓" {
				t.Errorf("Subject = %q", p.subject)
			}
			if p.messageID == "" || p.date.IsZero() {
				t.Errorf("Message-ID %q, Date %v: want both set", p.messageID, p.date)
			}
			if p.contentType != "multipart/alternative" {
				t.Errorf("Content-Type = %q, want multipart/alternative", p.contentType)
			}
			if diff := cmp.Diff(want, p.bodies); diff != "" {
				t.Errorf("bodies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSendBodyVariantsAndAuthOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         func(*Config)
		mail        Mail
		wantType    string
		wantBodies  map[string]string
		wantAuthed  []string
		wantFromHdr string
	}{
		{
			name:       "text only, no authorization code means no AUTH",
			cfg:        func(c *Config) { c.AuthorizationCode = "" },
			mail:       Mail{To: "user@example.org", Subject: "s", Text: "plain only"},
			wantType:   "text/plain",
			wantBodies: map[string]string{"text/plain": "plain only"},
		},
		{
			name:       "html only",
			mail:       Mail{To: "user@example.org", Subject: "s", HTML: "<p>html only</p>"},
			wantType:   "text/html",
			wantBodies: map[string]string{"text/html": "<p>html only</p>"},
			wantAuthed: []string{testUser},
		},
		{
			name: "username overrides the sender address for AUTH",
			cfg: func(c *Config) {
				c.EmailAddress = "support@example.com"
				c.Username = testUser
				c.SenderName = `Support "Team", Example`
			},
			mail:        Mail{To: "user@example.org", Subject: "s", Text: "t"},
			wantType:    "text/plain",
			wantBodies:  map[string]string{"text/plain": "t"},
			wantAuthed:  []string{testUser},
			wantFromHdr: `Support "Team", Example`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.Plaintext})
			cfg := config(srv, SecurityNone)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			if _, err := newSender(t, cfg).Send(testCtx(t, 10*time.Second), tt.mail); err != nil {
				t.Fatalf("Send: %v", err)
			}
			st := srv.State()
			if diff := cmp.Diff(tt.wantAuthed, st.Authed); diff != "" {
				t.Errorf("authenticated users (-want +got):\n%s", diff)
			}
			if tt.wantAuthed == nil && st.Attempts != 0 {
				t.Errorf("%d AUTH attempts, want none", st.Attempts)
			}
			if len(st.Mails) != 1 {
				t.Fatalf("server received %d mails, want 1", len(st.Mails))
			}
			if st.Mails[0].From != cfg.EmailAddress {
				t.Errorf("MAIL FROM %q, want %q", st.Mails[0].From, cfg.EmailAddress)
			}
			p := parseMail(t, st.Mails[0].Data)
			if p.contentType != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", p.contentType, tt.wantType)
			}
			if diff := cmp.Diff(tt.wantBodies, p.bodies); diff != "" {
				t.Errorf("bodies (-want +got):\n%s", diff)
			}
			if tt.wantFromHdr != "" && p.fromName != tt.wantFromHdr {
				t.Errorf("From name = %q, want %q", p.fromName, tt.wantFromHdr)
			}
		})
	}
}

func TestSendFailures(t *testing.T) {
	t.Parallel()
	const wrongPassword = "wrong-authorization-code-42"

	tests := []struct {
		name     string
		server   *smtptest.Options // nil: nothing listens on the port
		security string
		cfg      func(*Config)
		timeout  time.Duration // of the Send context; default 10s
		canceled bool          // cancel the Send context up front
		// want
		stage     string
		temporary bool
		is        []error
		isNot     []error
		as        func(error) bool
		contains  []string
		noAuth    bool // the server must not have seen an AUTH attempt
	}{
		{
			name:     "tls with a certificate no trusted CA issued",
			server:   &smtptest.Options{Mode: smtptest.ImplicitTLS},
			security: SecurityTLS,
			cfg:      func(c *Config) { c.CAFile = "" },
			stage:    StageTLS,
			is:       []error{sdk.ErrRejected},
			isNot:    []error{sdk.ErrUnavailable, sdk.ErrInvalidArgument},
			as:       isAs[*tls.CertificateVerificationError],
			contains: []string{"certificate did not verify", "smtp.ca_file"},
			noAuth:   true,
		},
		{
			name:     "starttls with a certificate no trusted CA issued",
			server:   &smtptest.Options{Mode: smtptest.StartTLS},
			security: SecuritySTARTTLS,
			cfg:      func(c *Config) { c.CAFile = "" },
			stage:    StageTLS,
			is:       []error{sdk.ErrRejected},
			isNot:    []error{sdk.ErrInvalidArgument},
			as:       isAs[*tls.CertificateVerificationError],
			contains: []string{"certificate did not verify", "smtp.ca_file"},
			noAuth:   true,
		},
		{
			name:     "starttls against a server without STARTTLS",
			server:   &smtptest.Options{Mode: smtptest.Plaintext},
			security: SecuritySTARTTLS,
			stage:    StageTLS,
			is:       []error{sdk.ErrRejected},
			isNot:    []error{sdk.ErrInvalidArgument},
			contains: []string{"STARTTLS", "smtp.security: tls"},
			noAuth:   true,
		},
		{
			name:     "tls against a smtptest.Plaintext server",
			server:   &smtptest.Options{Mode: smtptest.Plaintext},
			security: SecurityTLS,
			stage:    StageTLS,
			is:       []error{sdk.ErrRejected},
			isNot:    []error{sdk.ErrInvalidArgument},
			as:       isAs[tls.RecordHeaderError],
			contains: []string{"did not speak TLS", "smtp.security: starttls"},
			noAuth:   true,
		},
		{
			name:     "starttls against an implicit TLS server",
			server:   &smtptest.Options{Mode: smtptest.ImplicitTLS},
			security: SecuritySTARTTLS,
			// The server waits for a ClientHello, the client for a greeting:
			// only the deadline ends it.
			timeout:   500 * time.Millisecond,
			stage:     StageGreeting,
			temporary: true,
			is:        []error{sdk.ErrUnavailable, context.DeadlineExceeded},
			contains:  []string{"no greeting", "smtp.security: tls"},
			noAuth:    true,
		},
		{
			name:     "tls against a TLS 1.1-only server",
			server:   &smtptest.Options{Mode: smtptest.ImplicitTLS, LegacyTLS: true},
			security: SecurityTLS,
			stage:    StageTLS,
			is:       []error{sdk.ErrRejected},
			isNot:    []error{sdk.ErrInvalidArgument},
			contains: []string{"protocol version", "smtp.security: ssl"},
			noAuth:   true,
		},
		{
			name:     "wrong authorization code",
			server:   &smtptest.Options{Mode: smtptest.ImplicitTLS},
			security: SecurityTLS,
			cfg:      func(c *Config) { c.AuthorizationCode = wrongPassword },
			stage:    StageAuth,
			is:       []error{sdk.ErrRejected},
			isNot:    []error{sdk.ErrUnavailable},
			contains: []string{"535", "smtp.authorization_code", testUser},
		},
		{
			name:     "smtptest.Plaintext relay that offers AUTH only after STARTTLS",
			server:   &smtptest.Options{Mode: smtptest.StartTLS},
			security: SecurityNone,
			stage:    StageAuth,
			is:       []error{sdk.ErrRejected},
			isNot:    []error{sdk.ErrInvalidArgument},
			contains: []string{"SMTP AUTH", "smtp.security"},
			noAuth:   true,
		},
		{
			name:      "4xx on RCPT TO",
			server:    &smtptest.Options{Mode: smtptest.StartTLS, RcptErr: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}},
			security:  SecuritySTARTTLS,
			stage:     StageRcptTo,
			temporary: true,
			is:        []error{sdk.ErrUnavailable},
			isNot:     []error{sdk.ErrRejected},
			contains:  []string{"451", "try later"},
		},
		{
			name:     "5xx on RCPT TO",
			server:   &smtptest.Options{Mode: smtptest.ImplicitTLS, RcptErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}},
			security: SecurityTLS,
			stage:    StageRcptTo,
			is:       []error{sdk.ErrRejected},
			isNot:    []error{sdk.ErrUnavailable},
			contains: []string{"550", "no such user"},
		},
		{
			name:      "connection dropped during DATA",
			server:    &smtptest.Options{Mode: smtptest.ImplicitTLS, DropInData: true},
			security:  SecurityTLS,
			stage:     StageData,
			temporary: true,
			is:        []error{sdk.ErrUnavailable},
		},
		{
			name:      "server down",
			security:  SecurityTLS,
			stage:     StageConnect,
			temporary: true,
			is:        []error{sdk.ErrUnavailable},
			as:        isAs[*net.OpError],
			contains:  []string{"smtp.port"},
		},
		{
			name:      "context already canceled",
			server:    &smtptest.Options{Mode: smtptest.ImplicitTLS},
			security:  SecurityTLS,
			canceled:  true,
			stage:     StageConnect,
			temporary: true,
			is:        []error{sdk.ErrUnavailable, context.Canceled},
			noAuth:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var srv *smtptest.Server
			var cfg Config
			if tt.server != nil {
				srv = smtptest.Start(t, *tt.server)
				cfg = config(srv, tt.security)
			} else {
				cfg = closedPortConfig(t, tt.security)
			}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			if tt.canceled {
				cancel()
			}

			_, err := newSender(t, cfg).Send(ctx, Mail{To: "user@example.org", Subject: "s", Text: "t"})

			t.Logf("error: %v", err)
			stageErr, ok := errors.AsType[*StageError](err)
			if !ok {
				t.Fatalf("Send error = %v (%T), want a *StageError", err, err)
			}
			if stageErr.Stage != tt.stage || stageErr.Temporary != tt.temporary {
				t.Errorf("stage %q temporary %v, want %q %v (error: %v)",
					stageErr.Stage, stageErr.Temporary, tt.stage, tt.temporary, err)
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false, want true", err, target)
				}
			}
			for _, target := range tt.isNot {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = true, want false", err, target)
				}
			}
			if tt.as != nil && !tt.as(err) {
				t.Errorf("errors.As found no cause of the expected type in %v", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "smtp "+tt.stage+": ") {
				t.Errorf("error %q does not start with %q", msg, "smtp "+tt.stage+": ")
			}
			for _, want := range tt.contains {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
			if strings.Contains(msg, cfg.AuthorizationCode) {
				t.Errorf("error %q contains the authorization code", msg)
			}
			if srv != nil {
				st := srv.State()
				if len(st.Mails) != 0 {
					t.Errorf("server accepted %d mails, want none", len(st.Mails))
				}
				if tt.noAuth && st.Attempts != 0 {
					t.Errorf("server saw %d AUTH attempts, want none: credentials must not be sent", st.Attempts)
				}
			}
		})
	}
}

func isAs[T error](err error) bool {
	_, ok := errors.AsType[T](err)
	return ok
}

// closedPortConfig points at a port that was just free, so the dial is refused.
func closedPortConfig(t *testing.T, security string) Config {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return Config{
		Host: "127.0.0.1", Port: port, EmailAddress: testUser, SenderName: "Example Support",
		AuthorizationCode: testPassword, Security: security,
	}
}

func TestSendRefusesHeaderInjection(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.Plaintext})
	s := newSender(t, config(srv, SecurityNone))

	tests := []struct {
		name string
		mail Mail
		key  string
	}{
		{"CRLF in recipient", Mail{To: "user@example.org\r\nBcc: victim@example.org", Subject: "s", Text: "t"}, "mail.to"},
		{"subject not UTF-8", Mail{To: "user@example.org", Subject: "Caf\xe9", Text: "t"}, "mail.subject"},
		{"LF in recipient", Mail{To: "user@example.org\nX: y", Subject: "s", Text: "t"}, "mail.to"},
		{"CRLF in subject", Mail{To: "user@example.org", Subject: "hi\r\nBcc: victim@example.org", Text: "t"}, "mail.subject"},
		{"CR in subject", Mail{To: "user@example.org", Subject: "hi\rthere", Text: "t"}, "mail.subject"},
		{"recipient is not an address", Mail{To: "not an address", Subject: "s", Text: "t"}, "mail.to"},
		{"no body", Mail{To: "user@example.org", Subject: "s"}, "mail.text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.Send(testCtx(t, 10*time.Second), tt.mail)
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Send error = %v, want sdk.ErrInvalidArgument", err)
			}
			if !strings.HasPrefix(err.Error(), tt.key+": ") {
				t.Errorf("error %q does not name %s", err, tt.key)
			}
		})
	}
	t.Cleanup(func() {
		// Runs after the parallel subtests: none of them may have talked to
		// the server.
		if st := srv.State(); st.Sessions != 0 {
			t.Errorf("server saw %d SMTP sessions, want none", st.Sessions)
		}
	})
}

func TestSendConcurrently(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS})
	s := newSender(t, config(srv, SecuritySTARTTLS))
	ctx := testCtx(t, 20*time.Second)

	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Send(ctx, Mail{To: "user@example.org", Subject: "s", Text: "t"})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Send: %v", err)
	}
	if st := srv.State(); len(st.Mails) != n || len(st.Authed) != n {
		t.Errorf("server got %d mails and %d logins, want %d each", len(st.Mails), len(st.Authed), n)
	}
}

func TestStageError(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	tests := []struct {
		name string
		err  *StageError
		want error
		not  []error
	}{
		{"temporary", &StageError{Stage: StageData, Temporary: true, Err: cause}, sdk.ErrUnavailable, []error{sdk.ErrRejected}},
		{"permanent", &StageError{Stage: StageRcptTo, Err: cause}, sdk.ErrRejected, []error{sdk.ErrUnavailable}},
		{"misconfigured", misconfigured(StageTLS, cause), sdk.ErrInvalidArgument, []error{sdk.ErrRejected, sdk.ErrUnavailable}},
		{"server misfit", serverMisfit(StageTLS, cause), sdk.ErrRejected, []error{sdk.ErrInvalidArgument, sdk.ErrUnavailable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, want := tt.err.Error(), "smtp "+tt.err.Stage+": boom"; got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
			if !errors.Is(tt.err, tt.want) || !errors.Is(tt.err, cause) {
				t.Errorf("errors.Is misses %v or the cause", tt.want)
			}
			for _, n := range tt.not {
				if errors.Is(tt.err, n) {
					t.Errorf("errors.Is(err, %v) = true, want false", n)
				}
			}
		})
	}
}

// TestSendCancelInterruptsDialogue cancels a ctx without deadline while the
// client waits for the reply to EHLO, which never comes. Only closing the
// socket on cancel ends the wait; otherwise go-mail's own 15s timeout would,
// with an i/o timeout error.
func TestSendCancelInterruptsDialogue(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		_ = l.Close()
	})
	gotEHLO := make(chan string, 1)
	go func() {
		defer close(gotEHLO)
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "220 stub ESMTP\r\n"); err != nil {
			return
		}
		if line, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
			gotEHLO <- line
		}
		<-stop // never answer, but keep the connection open
	}()

	cfg := closedPortConfig(t, SecuritySTARTTLS)
	cfg.Port = l.Addr().(*net.TCPAddr).Port
	s := newSender(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Send(ctx, Mail{To: "user@example.org", Subject: "s", Text: "t"})
		errc <- err
	}()
	select {
	case line, ok := <-gotEHLO:
		if !ok || !strings.HasPrefix(line, "EHLO ") {
			t.Fatalf("stub server got %q, want an EHLO", line)
		}
	case err := <-errc:
		t.Fatalf("Send returned before EHLO: %v", err)
	}
	cancel()
	err = <-errc

	stageErr, ok := errors.AsType[*StageError](err)
	if !ok || stageErr.Stage != StageHello || !stageErr.Temporary {
		t.Fatalf("Send error = %v, want a temporary hello StageError", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false", err)
	}
	if isTimeout(err) {
		t.Errorf("error %v is a timeout: cancel did not interrupt the dialogue", err)
	}
}

// A plaintext mode against an implicit-TLS server gets no greeting: it must
// fail with a hint well before the delivery's own deadline, not time out.
func TestPlaintextModeAgainstImplicitTLSFailsFast(t *testing.T) {
	t.Parallel()
	for _, security := range []string{SecuritySTARTTLS, SecurityNone} {
		t.Run(security, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
			cfg := config(srv, security)
			cfg.AuthorizationCode = "" // none may not send it to a server; not what is tested here
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err = s.Send(ctx, Mail{To: "user@example.org", Subject: "s", Text: "t"})
			se, ok := errors.AsType[*StageError](err)
			if !ok || se.Stage != StageGreeting || !strings.Contains(err.Error(), "smtp.security: tls") {
				t.Fatalf("Send = %v, want a greeting failure hinting at smtp.security: tls", err)
			}
			if ctx.Err() != nil {
				t.Fatalf("the send ran into its own deadline instead of the greeting bound")
			}
		})
	}
}
