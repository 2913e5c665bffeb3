package smtpsend

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/mail"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Security modes accepted in smtp.security.
const (
	SecurityTLS      = "tls"      // implicit TLS from the first byte, TLS 1.2+
	SecuritySTARTTLS = "starttls" // plaintext connect, then mandatory STARTTLS, TLS 1.2+
	SecuritySSL      = "ssl"      // implicit TLS that still accepts TLS 1.0 and 1.1
	SecurityNone     = "none"     // plaintext; credentials only to loopback
)

// Config is the smtp section of the plugin config.
type Config struct {
	Host string `koanf:"host"`
	// Port defaults to 465 for tls and ssl, 587 for starttls and 25 for none.
	Port int `koanf:"port"`
	// EmailAddress is the sender address (envelope and From header).
	EmailAddress string `koanf:"email_address"`
	// SenderName is the display name of the From header.
	SenderName string `koanf:"sender_name"`
	// Username defaults to EmailAddress.
	Username string `koanf:"username"`
	// AuthorizationCode is the SMTP password. It is a secret: it never
	// appears in an error, a warning or a log line.
	AuthorizationCode string `koanf:"authorization_code"`
	// Security is one of tls (default), starttls, ssl or none.
	Security string `koanf:"security"`
	// CAFile is an optional PEM bundle trusted in addition to the system roots.
	CAFile string `koanf:"ca_file"`
	// Auth is plain, login or xoauth2; empty means the best mechanism the
	// server offers (SCRAM, CRAM-MD5, PLAIN, LOGIN) when AuthorizationCode is set.
	Auth string `koanf:"auth"`
	// OAuth2 is where xoauth2 gets its access tokens.
	OAuth2 OAuth2Config `koanf:"oauth2"`
	// DKIM, when set, signs every mail.
	DKIM DKIMConfig `koanf:"dkim"`
}

// DKIMConfig is the smtp.dkim section: all three keys or none. The signing
// algorithm follows the key: rsa-sha256 for an RSA key of 1024 bits or more,
// ed25519-sha256 for an Ed25519 key. The key file is read whenever the
// config is (New, Validate, so at every reload); it is a secret: no error
// or log line carries its content.
type DKIMConfig struct {
	// Domain is the signing domain (d=), whose DNS holds the public key.
	Domain string `koanf:"domain"`
	// Selector names the key's DNS record: <selector>._domainkey.<domain>.
	Selector string `koanf:"selector"`
	// PrivateKeyFile is a PEM file holding an unencrypted PKCS#1
	// ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY") private key.
	PrivateKeyFile string `koanf:"private_key_file"`
}

// enabled reports whether any DKIM key is set; check then insists on all three.
func (d DKIMConfig) enabled() bool {
	return d.Domain != "" || d.Selector != "" || d.PrivateKeyFile != ""
}

// minRSABits is the smallest RSA key DKIM verifiers accept (RFC 8301).
const minRSABits = 1024

// withDefaults fills the keys an operator may leave out. The port follows the
// security mode because a mismatched pair (STARTTLS on 465) never works.
func (c Config) withDefaults() Config {
	if c.Security == "" {
		c.Security = SecurityTLS
	}
	if c.Port == 0 {
		switch c.Security {
		case SecuritySTARTTLS:
			c.Port = 587
		case SecurityNone:
			c.Port = 25
		default:
			c.Port = 465
		}
	}
	if c.Username == "" {
		c.Username = c.EmailAddress
	}
	return c
}

// Validate returns every problem of the config, each naming its key as
// smtp.<key> and matching sdk.ErrInvalidArgument. It reads ca_file.
func (c Config) Validate() []error {
	errs, _ := c.withDefaults().check()
	return errs
}

// Warnings returns security warnings for a config that is valid but weak.
// They never contain secrets, so the host may log them.
func (c Config) Warnings() []string {
	c = c.withDefaults()
	var warns []string
	switch c.Security {
	case SecuritySSL:
		warns = append(warns, "smtp.security is ssl: TLS 1.0 and 1.1 are accepted, which are deprecated and weak; "+
			"switch to tls as soon as the server supports TLS 1.2")
	case SecurityNone:
		warns = append(warns, "smtp.security is none: mail, including recovery links and temporary passwords, "+
			"travels unencrypted; use it only for a relay on this machine")
		if c.CAFile != "" {
			warns = append(warns, "smtp.ca_file is ignored because smtp.security is none")
		}
	}
	if c.Auth == AuthXOAUTH2 {
		if c.AuthorizationCode != "" {
			warns = append(warns, "smtp.authorization_code is ignored: smtp.auth is xoauth2, which signs in with access tokens")
		}
		if sub := c.OAuth2.Subject; sub != "" && !strings.EqualFold(sub, c.Username) {
			warns = append(warns, fmt.Sprintf("smtp.oauth2.subject %q is not the XOAUTH2 user %q (smtp.username, or smtp.email_address): "+
				"Google refuses a token for another mailbox", sub, c.Username))
		}
	}
	if d := strings.ToLower(strings.TrimSuffix(c.DKIM.Domain, ".")); d != "" {
		_, from, _ := strings.Cut(strings.ToLower(c.EmailAddress), "@")
		if from != "" && from != d && !strings.HasSuffix(from, "."+d) {
			warns = append(warns, fmt.Sprintf("smtp.dkim.domain %q is not the domain of smtp.email_address (%q) nor a parent of it: "+
				"the signature verifies, but DMARC does not count it as aligned", c.DKIM.Domain, from))
		}
	}
	return warns
}

// configError is a problem with one config key or one field of a Mail.
type configError struct {
	key string // "smtp.host", "mail.to", ...
	msg string
}

func (e *configError) Error() string { return e.key + ": " + e.msg }

// Unwrap lets callers test for sdk.ErrInvalidArgument without the sentinel's
// text cluttering every line.
func (e *configError) Unwrap() error { return sdk.ErrInvalidArgument }

func invalid(key, format string, args ...any) error {
	return &configError{key: key, msg: fmt.Sprintf(format, args...)}
}

// loaded is what check read from files and built, so that New reads each
// file once.
type loaded struct {
	caCerts []*x509.Certificate // of ca_file
	dkim    crypto.Signer       // nil without smtp.dkim
	grant   grant               // nil unless smtp.auth is xoauth2
}

// check validates a config that already has its defaults.
func (c Config) check() ([]error, loaded) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkHost(c.Host))
	if c.Port < 1 || c.Port > 65535 {
		add(invalid("smtp.port", "%d is not a TCP port: use 1 to 65535, or leave it out for the default of smtp.security", c.Port))
	}
	add(checkSender(c.EmailAddress))
	switch {
	case strings.TrimSpace(c.SenderName) == "":
		add(invalid("smtp.sender_name", "must be set: it is the display name of the From header"))
	case strings.ContainsFunc(c.SenderName, unicode.IsControl):
		add(invalid("smtp.sender_name", "must not contain line breaks or other control characters"))
	case !utf8.ValidString(c.SenderName):
		add(invalid("smtp.sender_name", "must be valid UTF-8"))
	}
	if strings.ContainsFunc(c.Username, unicode.IsControl) {
		add(invalid("smtp.username", "must not contain line breaks or other control characters"))
	}
	switch c.Security {
	case SecurityTLS, SecuritySTARTTLS, SecuritySSL:
	case SecurityNone:
		if c.AuthorizationCode != "" && c.Host != "" && !isLoopback(c.Host) {
			add(invalid("smtp.security", "is none, which would send smtp.authorization_code in plaintext to %q; "+
				"use tls, starttls or ssl, or point smtp.host at a relay on this machine", c.Host))
		}
	default:
		add(invalid("smtp.security", "%q is not a security mode: use tls, starttls, ssl or none", c.Security))
	}
	var l loaded
	if c.CAFile != "" {
		var err error
		l.caCerts, err = loadCAFile(c.CAFile)
		add(err)
	}
	if c.DKIM.enabled() {
		var dkimErrs []error
		l.dkim, dkimErrs = c.DKIM.check()
		errs = append(errs, dkimErrs...)
	}
	var authErrs []error
	l.grant, authErrs = c.checkAuth()
	errs = append(errs, authErrs...)
	return errs, l
}

// checkAuth validates smtp.auth with the keys it needs, and smtp.oauth2.
func (c Config) checkAuth() (grant, []error) {
	switch c.Auth {
	case "":
		if c.OAuth2.set() {
			return nil, []error{invalid("smtp.auth", "is not set, so smtp.oauth2 is not used: set smtp.auth: xoauth2, or remove smtp.oauth2")}
		}
		return nil, nil
	case AuthPlain, AuthLogin:
		var errs []error
		if c.AuthorizationCode == "" {
			errs = append(errs, invalid("smtp.authorization_code", "must be set: smtp.auth is %s, which sends it as the password", c.Auth))
		}
		if c.OAuth2.set() {
			errs = append(errs, invalid("smtp.auth", "is %s, so smtp.oauth2 is not used: set smtp.auth: xoauth2, or remove smtp.oauth2", c.Auth))
		}
		return nil, errs
	case AuthXOAUTH2:
		var errs []error
		if c.Security == SecurityNone && c.Host != "" && !isLoopback(c.Host) {
			errs = append(errs, invalid("smtp.security", "is none, which would send the access token in plaintext to %q; "+
				"use tls or starttls", c.Host))
		}
		if !c.OAuth2.set() {
			return nil, append(errs, invalid("smtp.oauth2", "must be set with smtp.auth: xoauth2: token_url, client_id, client_secret "+
				"and scopes (Microsoft 365), or service_account_file and subject (Google)"))
		}
		g, oauthErrs := c.OAuth2.check()
		return g, append(errs, oauthErrs...)
	default:
		return nil, []error{invalid("smtp.auth", "%q is not an AUTH mechanism: use plain, login or xoauth2, "+
			"or leave it out to use the best one the server offers", c.Auth)}
	}
}

// check validates a DKIM section with at least one key set and loads its key.
func (d DKIMConfig) check() (crypto.Signer, []error) {
	var errs []error
	if err := checkDNSLabelish("smtp.dkim.domain", d.Domain, "the signing domain (d=), like example.com"); err != nil {
		errs = append(errs, err)
	}
	if err := checkDNSLabelish("smtp.dkim.selector", d.Selector, "the selector (s=) whose TXT record <selector>._domainkey.<domain> holds the public key"); err != nil {
		errs = append(errs, err)
	}
	if d.PrivateKeyFile == "" {
		errs = append(errs, invalid("smtp.dkim.private_key_file", "must be set, with smtp.dkim.domain and smtp.dkim.selector, "+
			"to a PEM file holding the RSA or Ed25519 private key; leave all three out to send unsigned mail"))
		return nil, errs
	}
	key, err := loadDKIMKey(d.PrivateKeyFile)
	if err != nil {
		return nil, append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return key, nil
}

// checkDNSLabelish accepts a DKIM domain or selector: dot-separated names of
// letters, digits, '-' and '_'. Anything else (a ';', a space, a line break)
// would corrupt the DKIM-Signature header's tag list.
func checkDNSLabelish(key, v, what string) error {
	if v == "" {
		return invalid(key, "must be set to %s; smtp.dkim needs domain, selector and private_key_file, or none of them", what)
	}
	for _, label := range strings.Split(strings.TrimSuffix(v, "."), ".") {
		if label == "" || strings.ContainsFunc(label, func(r rune) bool {
			return !(r == '-' || r == '_' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)))
		}) {
			return invalid(key, "%q is not a DNS name: use ASCII letters, digits, '-' and '_' in dot-separated labels "+
				"(an internationalized domain in its xn-- form)", v)
		}
	}
	return nil
}

// loadDKIMKey reads and checks the DKIM private key. Its errors name the file
// and the problem, never anything read from it.
func loadDKIMKey(path string) (crypto.Signer, error) {
	const key = "smtp.dkim.private_key_file"
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, invalid(key, "cannot read the DKIM private key: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, invalid(key, "%s: not a PEM private key: give the key in PEM form, "+
			"PKCS#1 (BEGIN RSA PRIVATE KEY) or PKCS#8 (BEGIN PRIVATE KEY)", path)
	}
	var parsed any
	switch block.Type {
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed = &ecdsa.PrivateKey{}
	case "ENCRYPTED PRIVATE KEY":
		return nil, invalid(key, "%s: the private key is encrypted: give it unencrypted "+
			"(e.g. openssl pkey -in encrypted.pem -out key.pem) and protect the file instead", path)
	default:
		return nil, invalid(key, "%s: not a PEM private key: the first PEM block is %q; "+
			"give the key in PKCS#1 (BEGIN RSA PRIVATE KEY) or PKCS#8 (BEGIN PRIVATE KEY) form", path, block.Type)
	}
	if err != nil {
		// The parser's own message is left out: it is ASN.1 detail at best.
		return nil, invalid(key, "%s: the PEM %q block does not parse as a private key", path, block.Type)
	}
	const algos = "DKIM signs with rsa-sha256 (an RSA key of 1024 bits or more, 2048 recommended) or ed25519-sha256 (an Ed25519 key)"
	switch k := parsed.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, invalid(key, "%s is a %d-bit RSA key: verifiers reject RSA keys under %d bits (RFC 8301); "+
				"make a 2048-bit one", path, bits, minRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return nil, invalid(key, "%s is an ECDSA key: %s", path, algos)
	case *ecdh.PrivateKey:
		return nil, invalid(key, "%s is an X25519 key: %s", path, algos)
	default:
		return nil, invalid(key, "%s holds an unsupported key type: %s", path, algos)
	}
}

func checkHost(host string) error {
	switch {
	case host == "":
		return invalid("smtp.host", "must be set to the SMTP server's host name or IP address")
	case strings.Contains(host, "://"):
		return invalid("smtp.host", "%q is a URL: give only the host name, and set smtp.security and smtp.port", host)
	case net.ParseIP(host) != nil:
		return nil
	case strings.HasPrefix(host, "["):
		return invalid("smtp.host", "%q: write an IPv6 address without brackets and the port in smtp.port", host)
	case strings.Contains(host, ":"):
		return invalid("smtp.host", "%q contains a port: put the port in smtp.port", host)
	case strings.ContainsFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' }):
		return invalid("smtp.host", "%q is not a host name: it contains a space, a control character or '/'", host)
	}
	return nil
}

func checkSender(addr string) error {
	if addr == "" {
		return invalid("smtp.email_address", "must be set to the sender address, like noreply@example.com")
	}
	parsed, err := mail.ParseAddress(addr)
	if err != nil {
		return invalid("smtp.email_address", "%q is not a valid email address: %v", addr, err)
	}
	if parsed.Name != "" || parsed.Address != addr {
		return invalid("smtp.email_address", "%q must be a bare address like noreply@example.com; "+
			"the display name goes in smtp.sender_name", addr)
	}
	return nil
}

// isLoopback reports whether host is this machine, so plaintext never leaves it.
// Names other than localhost are not resolved: DNS could point them anywhere.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadCAFile reads a PEM bundle and returns its certificates. It insists on at
// least one, because an empty or mistyped bundle would otherwise only show up
// as a certificate error at the first mail.
func loadCAFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, invalid("smtp.ca_file", "cannot read the CA bundle: %v", err)
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, invalid("smtp.ca_file", "%s: certificate %d does not parse: %v", path, len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, invalid("smtp.ca_file", "%s holds no PEM CERTIFICATE block: give the CA certificate in PEM form", path)
	}
	return certs, nil
}
