// Package smtpsend delivers mail, one message to one recipient per SMTP
// transaction, through the SMTP server the operator configured, over
// implicit TLS, STARTTLS, legacy TLS or plaintext, with go-mail.
//
// Without options every mail gets a fresh connection (connect, TLS, EHLO,
// AUTH, the transaction, QUIT). With WithPool (pool.go) a Sender keeps up to
// size authenticated connections open and reuses the most recently used
// one, so a mail costs only its transaction. At most size sends run at
// once; a connection idle for longer than the pool's idle time is closed
// the next time the pool is used; one idle for checkAfter (2 s) or more is
// checked with NOOP before reuse (with PIPELINING, by the RSET below). A
// mail whose reused connection turned out dead before the server could have
// it is sent again once on a fresh connection; a failure after the body's
// final dot is never resent here, since the server may have the mail.
//
// When the server offers PIPELINING (RFC 2920), the envelope goes out in
// one write (pipeline.go): RSET (on a reused connection, where it doubles
// as the liveness check), MAIL FROM, RCPT TO and DATA, and the body only
// after every reply of the group was positive; that saves two round trips
// per mail. Servers without the extension get one command at a time.
//
// With smtp.dkim set, every message is DKIM-signed (relaxed/relaxed,
// rsa-sha256 or ed25519-sha256 after the key) by go-mail as it is written,
// on every path above; the key is loaded and checked in config.go.
//
// Every delivery is traced stage by stage in sdk.SMTPStep (trace.go), and
// every failure is a *StageError that names the SMTP stage that failed and
// matches the sdk sentinel telling the caller whether to retry.
package smtpsend

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	stdmail "net/mail"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	mail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// Mail is one message to one recipient. Text, HTML or both must be set; with
// both the mail is multipart/alternative.
type Mail struct {
	To      string
	Subject string
	Text    string
	HTML    string
}

// Sender delivers mails with one config. It is safe for concurrent use.
type Sender struct {
	pool     *pool // nil: a fresh connection per mail
	host     string
	addr     string // host:port, as reported in the connect step
	security string
	username string
	from     stdmail.Address
	tlsConf  *tls.Config // nil for SecurityNone
	// noPipelining keeps to one command at a time even with servers that
	// offer PIPELINING; tests set it to reach that path against go-smtp.
	noPipelining bool
	// opts configure every go-mail client; the password lives only in the
	// closure of mail.WithPassword so that printing a Sender cannot leak it.
	opts []mail.Option
	// dkim signs every message when set (smtp.dkim).
	dkim *dkimKey
	// mechs are the AUTH mechanisms go-mail may pick, best first; nil
	// without AUTH.
	mechs []mail.SMTPAuthType
	// tokens are the access tokens of smtp.auth: xoauth2, nil otherwise.
	tokens *tokens
}

// dkimKey is a loaded smtp.dkim section.
type dkimKey struct {
	domain, selector string
	key              crypto.Signer
}

// dkimHeaders are the header fields every signature covers.
var dkimHeaders = []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}

// signer returns a go-mail DKIM signer for one message, relaxed/relaxed. Each
// message gets its own: go-mail's Signer records its algorithm on first use,
// so sharing one between concurrent sends would race.
func (d *dkimKey) signer() *mail.DKIMSigner {
	signer := mail.NewDKIMSigner(d.domain, d.selector, d.key)
	signer.HeaderCanonicalization(mail.CanonicalizationRelaxed)
	signer.BodyCanonicalization(mail.CanonicalizationRelaxed)
	signer.SignHeaders(dkimHeaders...)
	return signer
}

// timeoutMargin is how much longer than ctx go-mail's step timeout runs.
const timeoutMargin = time.Second

// authMechs lists the AUTH mechanisms to try, best first: go-mail's
// auto-discovery order minus NTLM, which needs a Windows domain this config
// has no key for. The list is explicit because go-mail's own auto-discovery
// skips PLAIN and LOGIN on connections our dialer encrypted (see dial).
func authMechs(security string) []mail.SMTPAuthType {
	if security == SecurityNone {
		// Plaintext AUTH only ever goes to loopback: Validate refuses the rest.
		return []mail.SMTPAuthType{
			mail.SMTPAuthSCRAMSHA256, mail.SMTPAuthSCRAMSHA1, mail.SMTPAuthCramMD5,
			mail.SMTPAuthPlainNoEnc, mail.SMTPAuthLoginNoEnc,
		}
	}
	return []mail.SMTPAuthType{
		mail.SMTPAuthSCRAMSHA256PLUS, mail.SMTPAuthSCRAMSHA256, mail.SMTPAuthSCRAMSHA1PLUS, mail.SMTPAuthSCRAMSHA1,
		mail.SMTPAuthCramMD5, mail.SMTPAuthPlain, mail.SMTPAuthLogin,
	}
}

// explicitMech is the go-mail mechanism of smtp.auth plain or login. go-mail's
// PLAIN and LOGIN refuse a connection they think unencrypted; ours are
// encrypted by our dialer unless security is none, which Validate allows
// only to loopback.
func explicitMech(auth, security string) mail.SMTPAuthType {
	switch {
	case auth == AuthPlain && security == SecurityNone:
		return mail.SMTPAuthPlainNoEnc
	case auth == AuthPlain:
		return mail.SMTPAuthPlain
	case security == SecurityNone:
		return mail.SMTPAuthLoginNoEnc
	default:
		return mail.SMTPAuthLogin
	}
}

// New validates cfg and prepares its TLS config, reading ca_file once. An
// invalid cfg yields all problems joined, matching sdk.ErrInvalidArgument.
// Without options every mail goes over a fresh connection.
func New(cfg Config, opts ...Option) (*Sender, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	cfg = cfg.withDefaults()
	errs, files := cfg.check()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Sender{
		host:     cfg.Host,
		addr:     net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		security: cfg.Security,
		username: cfg.Username,
		from:     stdmail.Address{Name: cfg.SenderName, Address: cfg.EmailAddress},
		// A fresh connection per mail makes NOOP before and RSET after the
		// transaction pointless round trips. The pool sends both itself,
		// where it can trace them and act on their failure.
		opts: []mail.Option{mail.WithPort(cfg.Port), mail.WithoutNoop(), mail.WithoutRset()},
	}
	if cfg.Security != SecurityNone {
		s.tlsConf = tlsConfig(cfg, files.caCerts)
		s.opts = append(s.opts, mail.WithTLSConfig(s.tlsConf))
	}
	switch cfg.Security {
	case SecurityTLS, SecuritySSL:
		// Our dialer does the handshake; WithSSL stops go-mail from also
		// trying STARTTLS inside the TLS session.
		s.opts = append(s.opts, mail.WithSSL())
	case SecuritySTARTTLS:
		s.opts = append(s.opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case SecurityNone:
		s.opts = append(s.opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	switch {
	case cfg.Auth == AuthXOAUTH2:
		// The password of each session is the token of the moment: dial
		// adds it.
		s.mechs = []mail.SMTPAuthType{mail.SMTPAuthXOAUTH2}
		s.opts = append(s.opts, mail.WithSMTPAuth(mail.SMTPAuthXOAUTH2), mail.WithUsername(cfg.Username))
		s.tokens = newTokens(files.grant, cfg.OAuth2.ClientSecret, time.Now)
	case cfg.Auth != "":
		mech := explicitMech(cfg.Auth, cfg.Security)
		s.mechs = []mail.SMTPAuthType{mech}
		s.opts = append(s.opts, mail.WithSMTPAuth(mech),
			mail.WithUsername(cfg.Username), mail.WithPassword(cfg.AuthorizationCode))
	case cfg.AuthorizationCode != "":
		s.mechs = authMechs(cfg.Security)
		s.opts = append(s.opts, mail.WithOpportunisticSMTPAuth(s.mechs...),
			mail.WithUsername(cfg.Username), mail.WithPassword(cfg.AuthorizationCode))
	}
	if files.dkim != nil {
		s.dkim = &dkimKey{domain: cfg.DKIM.Domain, selector: cfg.DKIM.Selector, key: files.dkim}
	}
	if o.poolSize > 0 {
		s.pool = newPool(o.poolSize, o.poolIdle)
	}
	return s, nil
}

// Close closes the idle pooled connections; the ones in use are closed when
// their send ends. Sends after Close still work, each on a fresh connection.
// Close is a no-op without WithPool and safe to call more than once.
func (s *Sender) Close() error {
	if s.pool != nil {
		s.pool.close()
	}
	if s.tokens != nil {
		s.tokens.close()
	}
	return nil
}

// tlsConfig is built once and shared by all connections; crypto/tls allows
// that as long as nobody modifies it.
func tlsConfig(cfg Config, caCerts []*x509.Certificate) *tls.Config {
	conf := &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
	if cfg.Security == SecuritySSL {
		// Go 1.26 still negotiates TLS 1.0/1.1 when asked explicitly, with
		// ECDHE-CBC suites; servers offering only RSA key exchange do not work.
		conf.MinVersion = tls.VersionTLS10
	}
	if len(caCerts) > 0 {
		roots, err := x509.SystemCertPool()
		if err != nil {
			// Without system roots ca_file is all we can trust; that is
			// what an operator with a private CA wants anyway.
			roots = x509.NewCertPool()
		}
		for _, cert := range caCerts {
			roots.AddCert(cert)
		}
		conf.RootCAs = roots
	}
	return conf
}

// Send delivers m on a fresh or, with WithPool, a pooled connection, bounded
// by ctx. reply is the server's answer to the accepted DATA, e.g. "250 2.0.0
// OK: queued as 1234". Failures are *StageError, or an error matching
// sdk.ErrInvalidArgument when m itself is wrong.
func (s *Sender) Send(ctx context.Context, m Mail) (reply string, err error) {
	res, err := s.SendTraced(ctx, m)
	return res.Reply, err
}

// SendTraced is Send that also reports each SMTP stage as it happened, for a
// connection test or metrics. On failure the Result is empty and the
// *StageError carries the trace up to and including the failed stage.
func (s *Sender) SendTraced(ctx context.Context, m Mail) (Result, error) {
	msg, err := s.message(m)
	if err != nil {
		return Result{}, err
	}
	if s.pool != nil {
		return s.sendPooled(ctx, msg)
	}
	conn := &connection{trace: s.newTracer()}
	defer conn.close()
	reply, stageErr := s.deliver(ctx, conn, msg)
	if stageErr != nil {
		conn.trace.fail(stageErr)
		return Result{}, stageErr
	}
	return Result{Reply: reply, Trace: conn.trace.steps}, nil
}

// deliver runs one SMTP session for msg on conn.
func (s *Sender) deliver(ctx context.Context, conn *connection, msg *mail.Msg) (string, *StageError) {
	if err := context.Cause(ctx); err != nil {
		return "", &StageError{Stage: StageConnect, Temporary: true, Err: err}
	}
	client, stageErr := s.dial(ctx, conn)
	if stageErr != nil {
		return "", stageErr
	}
	reply, stageErr := s.transact(ctx, client, conn, msg)
	if stageErr != nil {
		return "", stageErr
	}
	conn.trace.begin(StageResetClose, "QUIT")
	// The server owns the mail once it accepted DATA. A failed QUIT changes
	// nothing for the mail, and reporting it would make the caller send it
	// twice; the trace still shows it.
	if err := client.CloseWithSMTPClient(conn.smtp); err != nil {
		conn.trace.current().Err = err.Error()
	}
	conn.trace.finish()
	return reply, nil
}

// transact runs MAIL FROM, RCPT TO and DATA for msg on the freshly opened
// conn, pipelined when the server allows it.
func (s *Sender) transact(ctx context.Context, client *mail.Client, conn *connection, msg *mail.Msg) (string, *StageError) {
	if s.pipelines(conn) {
		return s.transactPipelined(ctx, conn, msg, false)
	}
	// The time go-mail spends between the handshake and MAIL FROM belongs
	// to no stage.
	conn.trace.finish()
	if err := client.SendWithSMTPClient(conn.smtp, msg); err != nil {
		return "", sendFailure(ctx, err)
	}
	reply := "250 accepted"
	if resp := msg.ServerResponse(); resp != "" {
		reply = "250 " + resp
	}
	if cur := conn.trace.current(); cur != nil && cur.Stage == StageData {
		cur.Detail = reply
	}
	return reply, nil
}

// message builds the MIME message, refusing header injection.
func (s *Sender) message(m Mail) (*mail.Msg, error) {
	if strings.ContainsAny(m.To, "\r\n") {
		return nil, invalid("mail.to", "recipient must not contain CR or LF")
	}
	to, err := stdmail.ParseAddress(m.To)
	if err != nil {
		return nil, invalid("mail.to", "%q is not a valid email address: %v", m.To, err)
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return nil, invalid("mail.subject", "must not contain CR or LF")
	}
	if !utf8.ValidString(m.Subject) {
		return nil, invalid("mail.subject", "must be valid UTF-8")
	}
	if m.Text == "" && m.HTML == "" {
		return nil, invalid("mail.text", "the mail has no body: set Text, HTML or both")
	}

	msg := mail.NewMsg()
	// FromMailAddress rather than FromFormat: FromFormat pastes the name into
	// quotes unescaped, so a name containing '"' would not parse.
	msg.FromMailAddress(&s.from)
	msg.ToMailAddress(to)
	msg.Subject(m.Subject)
	// Set now rather than at write time so that a failed RCPT already names
	// the Message-ID in its error.
	msg.SetMessageID()
	msg.SetDate()
	switch {
	case m.Text != "" && m.HTML != "":
		msg.SetBodyString(mail.TypeTextPlain, m.Text)
		msg.AddAlternativeString(mail.TypeTextHTML, m.HTML)
	case m.Text != "":
		msg.SetBodyString(mail.TypeTextPlain, m.Text)
	default:
		msg.SetBodyString(mail.TypeTextHTML, m.HTML)
	}
	if s.dkim != nil {
		// go-mail signs in Msg.WriteTo, which every send path (go-mail's
		// own, the pipelined one, a pooled resend) writes the body with.
		msg.SetDKIM(s.dkim.signer())
	}
	return msg, nil
}

// dial opens a fresh connection and runs greeting, EHLO, STARTTLS and AUTH,
// leaving the session in conn.smtp. With xoauth2 it signs in with the
// current access token; a token the server refuses (535, or any 5.7.x) is
// dropped and the session opened once more with a fresh one, since a token
// can be revoked or shortened before the expiry it came with.
func (s *Sender) dial(ctx context.Context, conn *connection) (*mail.Client, *StageError) {
	if s.tokens == nil {
		return s.dialOnce(ctx, conn)
	}
	for retried := false; ; retried = true {
		began := time.Now()
		tok, fresh, err := s.tokens.get(ctx)
		if err != nil {
			conn.trace.beginAt(StageToken, s.tokens.grant.describe(), began)
			stageErr, ok := errors.AsType[*StageError](err)
			if !ok {
				return nil, misconfigured(StageToken, err)
			}
			// The error is shared by every caller of one fetch: each gets
			// its own copy for its own trace.
			cp := *stageErr
			return nil, &cp
		}
		conn.trace.beginAt(StageToken, s.tokens.detail(tok, fresh), began)
		client, stageErr := s.dialOnce(ctx, conn, mail.WithPassword(tok.value))
		if stageErr == nil || !tokenRefused(stageErr) {
			return client, stageErr
		}
		if retried {
			stageErr.Err = fmt.Errorf("%w; the token was fresh from %s, so the server refuses this app for %q: "+
				"check that the app may send as this mailbox (Microsoft 365: SMTP.SendAsApp and a mailbox permission "+
				"for its service principal; Google: domain-wide delegation of %s) and smtp.username",
				stageErr.Err, s.tokens.grant.endpoint(), s.username, googleMailScope)
			return nil, stageErr
		}
		s.tokens.invalidate(tok)
		conn.trace.fail(stageErr)
		conn.close()
		*conn = connection{trace: conn.trace}
	}
}

// dialOnce is one attempt of dial; extra carries the access token.
//
// The dialer is ours rather than go-mail's so that connect and TLS failures
// carry their stage and so that ctx can abort the dialogue at any point:
// go-mail v0.8.1 applies ctx to the dial only and then uses fixed deadlines.
// The price is that go-mail does not know our connection is encrypted and its
// AUTH auto-discovery would skip PLAIN and LOGIN, hence authMechs.
func (s *Sender) dialOnce(ctx context.Context, conn *connection, extra ...mail.Option) (*mail.Client, *StageError) {
	opts := []mail.Option{
		mail.WithDialContextFunc(func(dialCtx context.Context, network, addr string) (net.Conn, error) {
			nc, err := s.connect(ctx, dialCtx, conn.trace, network, addr)
			if err == nil {
				conn.watch(ctx, nc)
			}
			return nc, err
		}),
		// go-mail reports the dialogue only through its debug log.
		mail.WithDebugLog(), mail.WithLogger(conn.trace),
	}
	if s.security == SecuritySTARTTLS {
		// go-mail runs the STARTTLS handshake inside its next write and
		// keeps the *tls.Conn to itself: the callback is the one place to
		// see what was negotiated, also when a later stage fails. The
		// clone is per delivery because the callback is.
		conf := s.tlsConf.Clone()
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			conn.trace.handshaken(cs)
			return nil
		}
		opts = append(opts, mail.WithTLSConfig(conf))
	}
	client, stageErr := s.newClient(ctx, append(opts, extra...)...)
	if stageErr != nil {
		return nil, stageErr
	}
	smtpClient, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return nil, s.handshakeFailure(ctx, conn.trace, err)
	}
	conn.smtp = smtpClient
	return client, nil
}

// newClient builds the go-mail client of one delivery. It holds settings
// only, so a pooled session gets a new one with the timeout of each ctx.
func (s *Sender) newClient(ctx context.Context, extra ...mail.Option) (*mail.Client, *StageError) {
	opts := slices.Concat(s.opts, extra, []mail.Option{mail.WithTimeout(stepTimeout(ctx))})
	client, err := mail.NewClient(s.host, opts...)
	if err != nil {
		return nil, misconfigured(StageConnect, fmt.Errorf("set up the go-mail client: %w", err))
	}
	return client, nil
}

// stepTimeout is the socket deadline go-mail sets for each step. ctx bounds
// the whole dialogue through connection.watch; a margin past ctx keeps
// go-mail's deadline from winning the race, so the error names ctx.
func stepTimeout(ctx context.Context) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		return max(time.Until(deadline), 0) + timeoutMargin
	}
	return mail.DefaultTimeout
}

// connect opens the TCP connection and, for implicit TLS, does the handshake.
// sendCtx is the context of the whole Send, dialCtx go-mail's shorter one.
func (s *Sender) connect(sendCtx, dialCtx context.Context, t *tracer, network, addr string) (net.Conn, error) {
	implicitTLS := s.security == SecurityTLS || s.security == SecuritySSL
	t.begin(StageConnect, addr)
	var dialer net.Dialer
	raw, err := dialer.DialContext(dialCtx, network, addr)
	if err != nil {
		return nil, failure(sendCtx, StageConnect,
			fmt.Errorf("%w; check smtp.host, smtp.port and that the server is up", err))
	}
	if !implicitTLS {
		t.begin(StageGreeting, "")
		return newGreetingConn(raw), nil
	}
	t.begin(StageTLS, "")
	conn := tls.Client(raw, s.tlsConf)
	if err := conn.HandshakeContext(dialCtx); err != nil {
		_ = raw.Close()
		if explained, ok := tlsProblem(s.security, err); ok {
			return nil, serverMisfit(StageTLS, explained)
		}
		return nil, failure(sendCtx, StageTLS, err)
	}
	t.handshaken(conn.ConnectionState())
	t.begin(StageGreeting, "")
	return conn, nil
}

// connection is the network side of one Send, or of several in turn when
// pooled. It owns the socket because go-mail v0.8.1 leaves it open when the
// handshake fails or QUIT is refused.
type connection struct {
	conn  net.Conn
	stop  func() bool // unregisters the ctx watcher
	trace *tracer     // of the send using the connection
	smtp  *smtp.Client
	// idleSince is when the connection went back to the pool.
	idleSince time.Time
	// spoiled marks a session out of step with the server (it waits for a
	// body that will not come): the connection is closed, never reused.
	spoiled bool
}

// watch takes ownership of conn and closes it when ctx ends: closing the
// socket is the one way to interrupt go-mail mid-command.
func (c *connection) watch(ctx context.Context, conn net.Conn) {
	c.conn = conn
	c.stop = context.AfterFunc(ctx, func() { _ = conn.Close() })
}

func (c *connection) close() {
	if c.stop != nil {
		c.stop()
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

// greetingTimeout bounds the wait for the server's 220 banner on a plaintext
// connection. A server that expects TLS from the first byte never sends it:
// without this bound a starttls or none config against port 465 would hang
// until the whole delivery's deadline instead of failing with a hint.
const greetingTimeout = 3 * time.Second

// greetingConn bounds reads until the banner arrived. go-mail sets its own
// deadlines on the connection, so the bound is applied to every deadline it
// sets until then; after the banner go-mail's deadlines apply unchanged.
type greetingConn struct {
	net.Conn
	bound   time.Time
	greeted bool
}

func newGreetingConn(c net.Conn) *greetingConn {
	g := &greetingConn{Conn: c, bound: time.Now().Add(greetingTimeout)}
	_ = c.SetReadDeadline(g.bound)
	return g
}

func (g *greetingConn) capped(t time.Time) time.Time {
	if g.greeted || (!t.IsZero() && t.Before(g.bound)) {
		return t
	}
	return g.bound
}

func (g *greetingConn) SetDeadline(t time.Time) error {
	if err := g.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.Conn.SetReadDeadline(g.capped(t))
}

func (g *greetingConn) SetReadDeadline(t time.Time) error {
	return g.Conn.SetReadDeadline(g.capped(t))
}

func (g *greetingConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if !g.greeted && n > 0 {
		g.greeted = true
	}
	return n, err
}
