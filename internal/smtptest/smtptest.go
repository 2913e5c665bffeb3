// Package smtptest runs real SMTP servers on loopback for tests: go-smtp with
// real TLS (a throwaway CA) and AUTH PLAIN (or AUTH XOAUTH2 with a token
// validator of the test's), recording what they receive and injecting the
// failures an SMTP gateway produces.
package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Credentials the test servers accept.
const (
	User     = "noreply@example.com"
	Password = "s3cret-authorization-code"
)

// PKI is a throwaway CA and a server certificate it issued for
// 127.0.0.1, ::1 and localhost.
type PKI struct {
	CAFile string // CA certificate as PEM, for smtp.ca_file
	Cert   tls.Certificate
}

// NewPKI makes a CA and a server certificate valid for one hour.
func NewPKI(t testing.TB) PKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtptest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return PKI{CAFile: caFile, Cert: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}
}

// Mode is how the server expects TLS.
type Mode int

const (
	ImplicitTLS Mode = iota // TLS from the first byte
	StartTLS                // plaintext, offers STARTTLS, AUTH only after it
	Plaintext               // no TLS at all, AUTH allowed in plaintext
)

// Options select the server's mode and the failures it injects.
type Options struct {
	Mode       Mode
	LegacyTLS  bool            // speak only TLS 1.0 and 1.1
	RcptErr    *smtp.SMTPError // reply to every RCPT TO
	DropInData bool            // close the connection instead of answering DATA
	PKI        *PKI            // nil: a fresh one
	// User and Password are the credentials AUTH accepts; empty: the
	// package's User and Password.
	User, Password string
	// Drop, if set, is asked at every MAIL FROM (cmd "MAIL") and after
	// every DATA body (cmd "DATA") with how many of that command the server
	// has seen so far, counting from 1 across all sessions. True closes the
	// connection instead of answering, as a server that dropped an idle
	// connection or crashed mid-transaction would.
	Drop func(cmd string, n int) bool
	// MailErr, if set, is asked at every MAIL FROM with how many the
	// server has seen so far, counting from 1; a non-nil reply refuses it,
	// e.g. 421 from a server closing a session that sent enough mails.
	MailErr func(n int) *smtp.SMTPError
	// XOAUTH2, if set, makes AUTH XOAUTH2 the only mechanism the server
	// offers (User and Password are then unused): the client's
	// "user=<user>\x01auth=Bearer <token>\x01\x01" is parsed and
	// XOAUTH2(user, token) decides. nil accepts; a refusal is answered
	// with the *smtp.SMTPError in the error, 535 5.7.8 when there is none;
	// a malformed response 501 5.5.2 (see XOAUTH2Server).
	XOAUTH2 func(user, token string) error
	// XOAUTH2ErrorChallenge refuses tokens as Gmail and Microsoft 365 do:
	// first a 334 with a JSON error status, then, after the client's
	// empty answer, the refusal.
	XOAUTH2ErrorChallenge bool
}

// Received is one mail the server accepted.
type Received struct {
	From string
	To   []string
	Data []byte
}

// Server is a go-smtp server on 127.0.0.1 with AUTH PLAIN (or XOAUTH2) over
// real TLS.
type Server struct {
	Addr string
	Port int
	PKI  PKI

	opts Options

	mu       sync.Mutex
	sessions int      // EHLO/HELO greetings
	authed   []string // usernames that authenticated
	attempts int      // AUTH exchanges, successful or not
	failed   int      // AUTH exchanges refused
	tokens   []string // XOAUTH2 bearer tokens presented
	mailCmds int      // MAIL FROM commands
	rcptCmds int      // RCPT TO commands
	dataCmds int      // DATA bodies received
	mails    []Received
	open     map[*testSession]struct{}
}

// Start runs a server until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	pki := opts.PKI
	if pki == nil {
		p := NewPKI(t)
		pki = &p
	}
	if opts.User == "" {
		opts.User = User
	}
	if opts.Password == "" {
		opts.Password = Password
	}
	srv := &Server{PKI: *pki, opts: opts, open: map[*testSession]struct{}{}}

	tlsConf := &tls.Config{Certificates: []tls.Certificate{pki.Cert}}
	if opts.LegacyTLS {
		tlsConf.MinVersion, tlsConf.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	}

	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		sess := &testSession{srv: srv, conn: c}
		srv.mu.Lock()
		srv.sessions++
		srv.open[sess] = struct{}{}
		srv.mu.Unlock()
		return sess, nil
	}))
	s.Domain = "localhost"
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)

	var l net.Listener
	var err error
	switch opts.Mode {
	case ImplicitTLS:
		l, err = tls.Listen("tcp", "127.0.0.1:0", tlsConf)
	case StartTLS:
		s.TLSConfig = tlsConf
		l, err = net.Listen("tcp", "127.0.0.1:0")
	case Plaintext:
		s.AllowInsecureAuth = true
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	srv.Addr = l.Addr().String()
	srv.Port = l.Addr().(*net.TCPAddr).Port

	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		_ = s.Close()
		// Serve may not have registered l yet, and then Close misses it.
		_ = l.Close()
		if err := <-done; err != nil {
			t.Errorf("test SMTP server: %v", err)
		}
	})
	return srv
}

// State is what a server saw.
type State struct {
	Sessions int      // EHLO/HELO greetings
	Authed   []string // usernames that authenticated
	Attempts int      // AUTH exchanges, successful or not
	MailCmds int      // MAIL FROM commands, accepted or not
	RcptCmds int      // RCPT TO commands, accepted or not
	DataCmds int      // DATA bodies received, accepted or not
	Mails    []Received
	// AuthFailed counts the AUTH exchanges refused: wrong credentials, a
	// token the XOAUTH2 validator refused, a malformed XOAUTH2 response.
	AuthFailed int
	// Tokens are the bearer tokens of the well-formed XOAUTH2 responses,
	// accepted or not, in order.
	Tokens []string
}

// State returns a copy of what the server saw so far.
func (srv *Server) State() State {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return State{
		Sessions:   srv.sessions,
		Authed:     append([]string(nil), srv.authed...),
		Attempts:   srv.attempts,
		MailCmds:   srv.mailCmds,
		RcptCmds:   srv.rcptCmds,
		DataCmds:   srv.dataCmds,
		Mails:      append([]Received(nil), srv.mails...),
		AuthFailed: srv.failed,
		Tokens:     append([]string(nil), srv.tokens...),
	}
}

// Kick closes every open connection without a word, as a server does with
// connections it considers idle. It returns how many it closed.
func (srv *Server) Kick() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for sess := range srv.open {
		_ = sess.conn.Conn().Close()
	}
	return len(srv.open)
}

// drop consults Options.Drop for the nth cmd and closes the connection if
// it says so.
func (s *testSession) drop(cmd string, n int) bool {
	if s.srv.opts.Drop == nil || !s.srv.opts.Drop(cmd, n) {
		return false
	}
	_ = s.conn.Conn().Close()
	return true
}

type testSession struct {
	srv  *Server
	conn *smtp.Conn
	from string
	to   []string
}

func (s *testSession) AuthMechanisms() []string {
	if s.srv.opts.XOAUTH2 != nil {
		return []string{XOAUTH2}
	}
	return []string{sasl.Plain}
}

func (s *testSession) Auth(mech string) (sasl.Server, error) {
	if s.srv.opts.XOAUTH2 != nil {
		if mech != XOAUTH2 {
			return nil, smtp.ErrAuthUnknownMechanism
		}
		return &XOAUTH2Server{Validate: s.srv.validateXOAUTH2, ErrorChallenge: s.srv.opts.XOAUTH2ErrorChallenge, malformed: s.srv.malformedXOAUTH2}, nil
	}
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, username, password string) error {
		s.srv.mu.Lock()
		defer s.srv.mu.Unlock()
		s.srv.attempts++
		if username != s.srv.opts.User || password != s.srv.opts.Password {
			s.srv.failed++
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		s.srv.authed = append(s.srv.authed, username)
		return nil
	}), nil
}

// validateXOAUTH2 asks Options.XOAUTH2 and counts the verdict. The lock is
// not held while it runs: a validator may be slow (an HTTP call to an
// OAuth2 server).
func (srv *Server) validateXOAUTH2(user, token string) error {
	err := srv.opts.XOAUTH2(user, token)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.attempts++
	srv.tokens = append(srv.tokens, token)
	if err != nil {
		srv.failed++
		return err
	}
	srv.authed = append(srv.authed, user)
	return nil
}

func (srv *Server) malformedXOAUTH2() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.attempts++
	srv.failed++
}

func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	s.srv.mailCmds++
	n := s.srv.mailCmds
	s.srv.mu.Unlock()
	if s.drop("MAIL", n) {
		return errors.New("connection dropped by the test")
	}
	if s.srv.opts.MailErr != nil {
		if err := s.srv.opts.MailErr(n); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}

func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.srv.mu.Lock()
	s.srv.rcptCmds++
	s.srv.mu.Unlock()
	if s.srv.opts.RcptErr != nil {
		return s.srv.opts.RcptErr
	}
	s.to = append(s.to, to)
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	s.srv.dataCmds++
	n := s.srv.dataCmds
	s.srv.mu.Unlock()
	if s.drop("DATA", n) {
		return errors.New("connection dropped by the test")
	}
	if s.srv.opts.DropInData {
		// The client has sent the final dot and waits for a reply that
		// never comes.
		_ = s.conn.Conn().Close()
		return errors.New("connection dropped by the test")
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.mails = append(s.srv.mails, Received{From: s.from, To: s.to, Data: data})
	return nil
}

func (s *testSession) Reset() {
	s.from, s.to = "", nil
}

func (s *testSession) Logout() error {
	s.srv.mu.Lock()
	delete(s.srv.open, s)
	s.srv.mu.Unlock()
	return nil
}
