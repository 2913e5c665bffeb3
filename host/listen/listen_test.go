package listen

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
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
)

// testCA issues server certificates for 127.0.0.1 that clients trust
// through pool.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1000),
		Subject:               pkix.Name{CommonName: "listen test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a PEM certificate for 127.0.0.1 with the given serial and
// its PEM key; key nil makes a new one.
func (ca *testCA) issue(t *testing.T, serial int64, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, _ *ecdsa.PrivateKey) {
	t.Helper()
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), key
}

// replace writes a file the way a certificate tool does: a new file renamed
// over the old one.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// clock is a test's time; advance moves it past the check interval.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(checkEvery)
}

// tlsServer serves HTTPS on a loopback listener with a reloading
// certificate whose files the test can replace.
type tlsServer struct {
	ca                *testCA
	certFile, keyFile string
	key               *ecdsa.PrivateKey
	addr              string
	clock             *clock
	logs              *testlog.Buffer
}

func startTLS(t *testing.T) *tlsServer {
	t.Helper()
	dir := t.TempDir()
	s := &tlsServer{ca: newCA(t), certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		clock: &clock{t: time.Now()}, logs: &testlog.Buffer{}}
	certPEM, keyPEM, key := s.ca.issue(t, 1, nil)
	s.key = key
	replace(t, s.certFile, certPEM)
	replace(t, s.keyFile, keyPEM)
	cert, err := loadCertificate(s.certFile, s.keyFile, slog.New(slog.NewJSONHandler(s.logs, nil)), s.clock.now)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Open("listen", "127.0.0.1:0", cert.Config())
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	serve(t, ln)
	return s
}

func serve(t *testing.T, ln net.Listener) {
	t.Helper()
	hs := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
}

// handshake connects afresh and returns the serial of the certificate the
// server presented, verified against the CA.
func (s *tlsServer) handshake(t *testing.T) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.ca.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", s.addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestServesTheCertificateOverTLS12OrLater(t *testing.T) {
	t.Parallel()
	s := startTLS(t)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.pool}}}
	resp, err := c.Get("https://" + s.addr + "/")
	if err != nil {
		t.Fatalf("HTTPS GET: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("HTTPS GET: %d %q, want 200 ok", resp.StatusCode, body)
	}
	if resp.TLS == nil || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %+v, want the certificate with serial 1 over TLS >= 1.2", resp.TLS)
	}

	old := &tls.Config{RootCAs: s.ca.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if conn, err := tls.Dial("tcp", s.addr, old); err == nil {
		conn.Close()
		t.Errorf("a TLS 1.1 client completed a handshake, want TLS >= 1.2 only")
	}

	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + s.addr + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the TLS listener answered 200")
		}
	}
}

func TestReplacedCertificateServesNewHandshakes(t *testing.T) {
	t.Parallel()
	s := startTLS(t)
	if got := s.handshake(t); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	// A renewed certificate for the same key: only the certificate file changes.
	certPEM, _, _ := s.ca.issue(t, 2, s.key)
	replace(t, s.certFile, certPEM)
	if got := s.handshake(t); got != 1 {
		t.Errorf("serial %d within a second of the last check, want 1 (files are looked at once per second at most)", got)
	}
	s.clock.advance()
	if got := s.handshake(t); got != 2 {
		t.Errorf("serial %d after the certificate file was replaced, want 2", got)
	}

	// A new key: both files change.
	certPEM, keyPEM, _ := s.ca.issue(t, 3, nil)
	replace(t, s.keyFile, keyPEM)
	replace(t, s.certFile, certPEM)
	s.clock.advance()
	if got := s.handshake(t); got != 3 {
		t.Errorf("serial %d after both files were replaced, want 3", got)
	}
	if n := strings.Count(s.logs.String(), "TLS certificate reloaded"); n != 2 {
		t.Errorf("%d reload lines, want 2:\n%s", n, s.logs)
	}
}

func TestBrokenReplacementKeepsTheLastGoodCertificate(t *testing.T) {
	t.Parallel()
	s := startTLS(t)
	const refused = "TLS certificate not reloaded; the last good certificate stays in use"
	_, otherKey, _ := s.ca.issue(t, 9, nil)
	goodCert, goodKey, _ := s.ca.issue(t, 4, nil)
	steps := []struct {
		name   string
		change func()
		serial int64
		errors int // refused lines logged so far
	}{
		{"garbage certificate", func() { replace(t, s.certFile, []byte("not a certificate")) }, 1, 1},
		{"unchanged garbage is logged once", func() {}, 1, 1},
		{"key of another certificate", func() {
			certPEM, _, _ := s.ca.issue(t, 5, s.key)
			replace(t, s.certFile, certPEM)
			replace(t, s.keyFile, otherKey)
		}, 1, 2},
		{"key file removed", func() {
			if err := os.Remove(s.keyFile); err != nil {
				t.Fatal(err)
			}
		}, 1, 3},
		{"a good pair again", func() {
			replace(t, s.certFile, goodCert)
			replace(t, s.keyFile, goodKey)
		}, 4, 3},
	}
	for _, st := range steps {
		st.change()
		s.clock.advance()
		if got := s.handshake(t); got != st.serial {
			t.Errorf("%s: serial %d, want %d", st.name, got, st.serial)
		}
		if n := strings.Count(s.logs.String(), refused); n != st.errors {
			t.Errorf("%s: %d refused-reload lines, want %d:\n%s", st.name, n, st.errors, s.logs)
		}
	}
	if !strings.Contains(s.logs.String(), `"level":"ERROR"`) || !strings.Contains(s.logs.String(), "tls.key_file: cannot read") {
		t.Errorf("refused reloads are not errors naming the key:\n%s", s.logs)
	}
	if strings.Contains(s.logs.String(), "PRIVATE KEY") {
		t.Errorf("key material in the log")
	}
}

func TestLoadCertificateRefusesABadPair(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t), t.TempDir()
	certPEM, _, _ := ca.issue(t, 1, nil)
	_, otherKey, _ := ca.issue(t, 2, nil)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	replace(t, certFile, certPEM)
	replace(t, keyFile, otherKey)
	log := slog.New(slog.DiscardHandler)
	if _, err := LoadCertificate(certFile, keyFile, log); err == nil || !strings.Contains(err.Error(), "tls.cert_file, tls.key_file") {
		t.Errorf("mismatched pair: %v, want an error naming both keys", err)
	}
	if _, err := LoadCertificate(certFile, filepath.Join(dir, "absent"), log); err == nil || !strings.Contains(err.Error(), "tls.key_file: cannot read") {
		t.Errorf("absent key: %v, want an error naming tls.key_file", err)
	}
}

func TestPlaintextListener(t *testing.T) {
	t.Parallel()
	ln, err := Open("demo_ui.listen", "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("HTTP GET: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HTTP GET: %d, want 200", resp.StatusCode)
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Errorf("a TLS handshake succeeded on a plaintext listener")
	}
}

func TestGroupClosesEarlierListenersWhenOneFails(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		addr func(taken string) string
	}{
		{"address in use", func(taken string) string { return taken }},
		// 192.0.2.0/24 is TEST-NET-1: no interface of this machine has it.
		{"address not on this machine", func(string) string { return "192.0.2.1:9" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var g Group
			main, err := g.Open("listen", "127.0.0.1:0", nil)
			if err != nil {
				t.Fatal(err)
			}
			admin, err := g.Open("admin.listen", "127.0.0.1:0", nil)
			if err != nil {
				t.Fatal(err)
			}
			addr := tt.addr(main.Addr().String())
			_, err = g.Open("gate.listen", addr, nil)
			if err == nil || !strings.HasPrefix(err.Error(), "listen on "+addr+" (gate.listen): ") {
				t.Fatalf("error = %v, want one starting with %q", err, "listen on "+addr+" (gate.listen): ")
			}
			for _, ln := range []net.Listener{main, admin} {
				if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept on %s after the failure: %v, want it closed", ln.Addr(), err)
				}
				again, err := net.Listen("tcp", ln.Addr().String())
				if err != nil {
					t.Errorf("port %s still bound after the failure: %v", ln.Addr(), err)
				} else {
					again.Close()
				}
			}
		})
	}
}

func TestLoopbackAndTheSecurityWarning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr     string
		loopback bool
	}{
		{"127.0.0.1:8080", true},
		{"127.0.0.2:8080", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"LocalHost.:8080", true},
		{"[::ffff:127.0.0.1]:8080", true},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{":8080", false},
		{"10.0.0.1:8080", false},
		{"192.168.1.20:8080", false},
		{"[fd00::1]:8080", false},
		{"[fe80::1%eth0]:8080", false},
		{"gateway.internal:8080", false},
		{"localhost.example.com:8080", false},
		{"my-localhost:8080", false},
		{"not-host-port", false},
	}
	for _, tt := range tests {
		if got := Loopback(tt.addr); got != tt.loopback {
			t.Errorf("Loopback(%q) = %v, want %v", tt.addr, got, tt.loopback)
		}
		for _, tlsOn := range []bool{false, true} {
			w := Warning("gate.listen", tt.addr, tlsOn)
			switch {
			case tlsOn || tt.loopback:
				if w != "" {
					t.Errorf("Warning(%q, tls %v) = %q, want none", tt.addr, tlsOn, w)
				}
			case !strings.Contains(w, "gate.listen "+tt.addr) || !strings.Contains(w, "tls.cert_file"):
				t.Errorf("Warning(%q, no tls) = %q, want one naming the key, the address and tls.cert_file", tt.addr, w)
			}
		}
	}
}
