package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
)

// TLS is the certificate the host's listeners serve. Kratos sends users'
// passwords (POST /hooks/password) and the webhook API key to listen, so a
// listener off loopback needs TLS.
type TLS struct {
	// CertFile and KeyFile are PEM files; both or neither. Set, listen,
	// gate.listen and admin.listen serve HTTPS (TLS >= 1.2); the demo UI
	// stays plain. The paths are restart-only, the files' content reloads.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

// Enabled reports whether the listeners serve HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Gate is the optional listener of GET /gate, so that the reverse proxy
// reaches the gate while the webhook listener stays private.
type Gate struct {
	// Listen is host:port; empty (the default) serves /gate on listen. Set,
	// /gate is served here only (listen answers 404 for it); the health
	// probes are served on both.
	Listen string `koanf:"listen"`
}

// listenerProblems checks gate.listen and tls.*, each problem naming its key.
func (c *Config) listenerProblems() []string {
	var p []string
	if c.Gate.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Gate.Listen); err != nil || port == "" {
			p = append(p, fmt.Sprintf("gate.listen: %q is not host:port (e.g. 127.0.0.1:8082)", c.Gate.Listen))
		}
	}
	switch {
	case c.TLS.CertFile == "" && c.TLS.KeyFile == "":
		return p
	case c.TLS.CertFile == "" || c.TLS.KeyFile == "":
		return append(p, "tls.cert_file, tls.key_file: set both or neither (the server certificate and its private key, PEM)")
	}
	certPEM, certErr := os.ReadFile(c.TLS.CertFile)
	if certErr != nil {
		p = append(p, "tls.cert_file: cannot read: "+certErr.Error())
	}
	keyPEM, keyErr := os.ReadFile(c.TLS.KeyFile)
	if keyErr != nil {
		p = append(p, "tls.key_file: cannot read: "+keyErr.Error())
	}
	if certErr == nil && keyErr == nil {
		// tls's errors name the problem, never the key's bytes.
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			p = append(p, "tls.cert_file, tls.key_file: not a PEM certificate and its private key: "+err.Error())
		}
	}
	return p
}
