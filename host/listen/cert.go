package listen

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// checkEvery bounds how often a handshake looks at the files.
const checkEvery = time.Second

// Certificate is a server certificate read from a PEM certificate file and
// a PEM key file, reloaded when their content changes: a handshake looks at
// the files at most once per checkEvery. A new pair that does not load is
// logged as an error and the last good pair stays in use.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	checked time.Time
	// seenCert and seenKey are the files' content last loaded or refused,
	// so a broken pair is logged once, not on every check.
	seenCert, seenKey []byte
}

// LoadCertificate reads the pair once; an error here (e.g. at start) names
// the config keys. log receives the reloads and the refused pairs.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	return loadCertificate(certFile, keyFile, log, time.Now)
}

func loadCertificate(certFile, keyFile string, log *slog.Logger, now func() time.Time) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log, now: now}
	certPEM, keyPEM, err := c.read()
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file, tls.key_file: not a PEM certificate and its private key: %w", err)
	}
	c.cert, c.seenCert, c.seenKey, c.checked = &cert, certPEM, keyPEM, c.now()
	return c, nil
}

// Config is the TLS configuration of a listener: TLS 1.2 or later, this
// certificate.
func (c *Certificate) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}

// GetCertificate is tls.Config's hook: the pair in use, refreshed first
// when the last look at the files is checkEvery old.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= checkEvery {
		c.checked = now
		c.refresh()
	}
	return c.cert, nil
}

// refresh loads the files when their content differs from what was last
// seen. Called with mu held.
func (c *Certificate) refresh() {
	certPEM, keyPEM, err := c.read()
	if err != nil {
		// Between the writes of a rotation, or a file removed: keep serving.
		if c.seenCert != nil {
			c.log.Error("TLS certificate not reloaded; the last good certificate stays in use", "error", err.Error())
			c.seenCert, c.seenKey = nil, nil
		}
		return
	}
	if bytes.Equal(certPEM, c.seenCert) && bytes.Equal(keyPEM, c.seenKey) {
		return
	}
	c.seenCert, c.seenKey = certPEM, keyPEM
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		c.log.Error("TLS certificate not reloaded; the last good certificate stays in use",
			"cert_file", c.certFile, "key_file", c.keyFile, "error", err.Error())
		return
	}
	c.cert = &cert
	attrs := []any{"cert_file", c.certFile}
	if cert.Leaf != nil {
		attrs = append(attrs, "not_after", cert.Leaf.NotAfter)
	}
	c.log.Info("TLS certificate reloaded", attrs...)
}

func (c *Certificate) read() (certPEM, keyPEM []byte, err error) {
	certPEM, certErr := os.ReadFile(c.certFile)
	if certErr != nil {
		certErr = fmt.Errorf("tls.cert_file: cannot read: %w", certErr)
	}
	keyPEM, keyErr := os.ReadFile(c.keyFile)
	if keyErr != nil {
		keyErr = fmt.Errorf("tls.key_file: cannot read: %w", keyErr)
	}
	return certPEM, keyPEM, errors.Join(certErr, keyErr)
}
