// Generating the 512-bit key that Validate must refuse needs this.
//go:debug rsa1024min=0

package smtpsend

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

const (
	testDKIMDomain   = "example.com"
	testDKIMSelector = "mail2026"
)

// writeKey writes key as PEM (PKCS#8, or PKCS#1 for RSA when pkcs1) and
// returns the path and the DKIM TXT record that publishes its public half.
func writeKey(t *testing.T, key crypto.Signer, pkcs1 bool) (path, txt string) {
	t.Helper()
	var block *pem.Block
	if k, ok := key.(*rsa.PrivateKey); ok && pkcs1 {
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	path = filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		txt = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	default:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		txt = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
	return path, txt
}

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
)

// testRSAKey is one 2048-bit key for the whole package: generating it takes
// a while under -race.
func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaKeyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey
}

// verifyDKIM checks data's one DKIM signature against txt, published for
// <testDKIMSelector>._domainkey.<testDKIMDomain> only.
func verifyDKIM(data []byte, txt string) (*dkim.Verification, error) {
	lookup := func(name string) ([]string, error) {
		if name != testDKIMSelector+"._domainkey."+testDKIMDomain {
			return nil, errors.New("no TXT record for " + name)
		}
		return []string{txt}, nil
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		return nil, err
	}
	if len(verifs) != 1 {
		return nil, errors.New("want exactly one DKIM signature")
	}
	return verifs[0], nil
}

// TestDKIMSignedMailVerifies sends through every send path (fresh
// connection, pipelined or not; pooled) with an RSA and an Ed25519 key and
// verifies what the server received with go-msgauth, an independent
// implementation; a changed body must fail it.
func TestDKIMSignedMailVerifies(t *testing.T) {
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_ = edPub
	keys := []struct {
		name  string
		key   crypto.Signer
		pkcs1 bool
		algo  string
	}{
		{"rsa-pkcs1", testRSAKey(t), true, "rsa-sha256"},
		{"rsa-pkcs8", testRSAKey(t), false, "rsa-sha256"},
		{"ed25519", edKey, false, "ed25519-sha256"},
	}
	paths := []struct {
		name         string
		pool         bool
		noPipelining bool
	}{
		{"fresh pipelined", false, false},
		{"fresh unpipelined", false, true},
		{"pooled", true, false},
	}
	for _, k := range keys {
		for _, p := range paths {
			t.Run(k.name+"/"+p.name, func(t *testing.T) {
				keyFile, txt := writeKey(t, k.key, k.pkcs1)
				srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
				cfg := config(srv, SecurityTLS)
				cfg.DKIM = DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: keyFile}
				var opts []Option
				if p.pool {
					opts = append(opts, WithPool(2, time.Minute))
				}
				s, err := New(cfg, opts...)
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				t.Cleanup(func() { _ = s.Close() })
				s.noPipelining = p.noPipelining
				mails := []Mail{
					{To: "user@example.org", Subject: "Your temporary password", Text: "Password: Tr0ub4dor&3\n\nIt expires in 15 minutes.\n"},
					{To: "user@example.org", Subject: "Récupération — ünïcode", Text: "plain part\n", HTML: "<p>html part</p>\n"},
				}
				for _, m := range mails {
					if _, err := s.Send(testCtx(t, 10*time.Second), m); err != nil {
						t.Fatalf("Send: %v", err)
					}
				}
				got := srv.State().Mails
				if len(got) != len(mails) {
					t.Fatalf("server got %d mails, want %d", len(got), len(mails))
				}
				for i, rcv := range got {
					v, err := verifyDKIM(rcv.Data, txt)
					if err != nil {
						t.Fatalf("mail %d: %v\n%s", i, err, rcv.Data)
					}
					if v.Err != nil {
						t.Fatalf("mail %d: signature does not verify: %v\n%s", i, v.Err, rcv.Data)
					}
					if v.Domain != testDKIMDomain {
						t.Errorf("mail %d: d=%q, want %q", i, v.Domain, testDKIMDomain)
					}
					signed := strings.ToLower(strings.Join(v.HeaderKeys, ":"))
					for _, h := range dkimHeaders {
						if !strings.Contains(":"+signed+":", ":"+strings.ToLower(h)+":") {
							t.Errorf("mail %d: h=%s does not cover %s", i, signed, h)
						}
					}
					sig := headerValue(rcv.Data, "DKIM-Signature")
					for _, tag := range []string{"a=" + k.algo, "c=relaxed/relaxed", "s=" + testDKIMSelector} {
						if !strings.Contains(sig, tag) {
							t.Errorf("mail %d: DKIM-Signature %q lacks %s", i, sig, tag)
						}
					}

					// A changed body must fail.
					tampered := bytes.Replace(rcv.Data, []byte("part"), []byte("PART"), 1)
					if i == 0 {
						tampered = bytes.Replace(rcv.Data, []byte("15 minutes"), []byte("15 hours"), 1)
					}
					if bytes.Equal(tampered, rcv.Data) {
						t.Fatalf("mail %d: tampering changed nothing:\n%s", i, rcv.Data)
					}
					if v, err := verifyDKIM(tampered, txt); err == nil && v.Err == nil {
						t.Errorf("mail %d: a changed body still verifies", i)
					}
				}
			})
		}
	}
}

// headerValue returns the unfolded value of the first header field name.
func headerValue(data []byte, name string) string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	for i, line := range lines {
		if !strings.HasPrefix(strings.ToLower(line), strings.ToLower(name)+":") {
			continue
		}
		v := line[len(name)+1:]
		for _, cont := range lines[i+1:] {
			if cont == "" || (cont[0] != ' ' && cont[0] != '\t') {
				break
			}
			v += cont
		}
		return strings.Join(strings.Fields(v), " ")
	}
	return ""
}

// TestNoDKIMWithoutConfig: without smtp.dkim the mail carries no signature.
func TestNoDKIMWithoutConfig(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	s := newSender(t, config(srv, SecurityTLS))
	if _, err := s.Send(testCtx(t, 10*time.Second), Mail{To: "user@example.org", Subject: "s", Text: "t"}); err != nil {
		t.Fatal(err)
	}
	if data := srv.State().Mails[0].Data; bytes.Contains(bytes.ToLower(data), []byte("dkim-signature")) {
		t.Fatalf("unsigned config produced a signature:\n%s", data)
	}
}

// TestDKIMConfigInvalid: each bad smtp.dkim is refused by Validate and New
// with an error naming the key and the problem, and none carries key
// material.
func TestDKIMConfigInvalid(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	rsaPath, _ := writeKey(t, testRSAKey(t), false)

	small, err := rsa.GenerateKey(rand.Reader, 512) //nolint:gosec // the point of the test
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKCS8PrivateKey(small)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecSEC1, _ := x509.MarshalECPrivateKey(ec)
	garbage := bytes.Repeat([]byte{0x30, 0x82, 0x13, 0x37}, 40)

	files := map[string][]byte{
		"small":   pemOf("PRIVATE KEY", smallDER),
		"ecpkcs8": pemOf("PRIVATE KEY", ecPKCS8),
		"ecsec1":  pemOf("EC PRIVATE KEY", ecSEC1),
		"garbage": pemOf("RSA PRIVATE KEY", garbage),
		"cert":    pemOf("CERTIFICATE", garbage),
		"der":     smallDER,
	}
	paths := map[string]string{}
	for name, data := range files {
		paths[name] = write(name+".pem", data)
	}
	// Secrets the errors must not carry: the base64 and raw bytes of every key file.
	var secrets []string
	for _, data := range files {
		if b, _ := pem.Decode(data); b != nil {
			secrets = append(secrets, base64.StdEncoding.EncodeToString(b.Bytes)[:24], string(b.Bytes[8:24]))
		}
	}

	tests := []struct {
		name string
		dkim DKIMConfig
		want []string // substrings of one error, in order: key first
	}{
		{"no domain", DKIMConfig{Selector: testDKIMSelector, PrivateKeyFile: rsaPath},
			[]string{"smtp.dkim.domain: must be set"}},
		{"no selector", DKIMConfig{Domain: testDKIMDomain, PrivateKeyFile: rsaPath},
			[]string{"smtp.dkim.selector: must be set"}},
		{"no key file", DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector},
			[]string{"smtp.dkim.private_key_file: must be set"}},
		{"selector with ;", DKIMConfig{Domain: testDKIMDomain, Selector: "s1; d=evil.example", PrivateKeyFile: rsaPath},
			[]string{"smtp.dkim.selector:", "is not a DNS name"}},
		{"unreadable file", DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: filepath.Join(dir, "missing.pem")},
			[]string{"smtp.dkim.private_key_file: cannot read the DKIM private key", "missing.pem"}},
		{"not PEM", DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: paths["der"]},
			[]string{"smtp.dkim.private_key_file:", "not a PEM private key"}},
		{"certificate", DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: paths["cert"]},
			[]string{"smtp.dkim.private_key_file:", "not a PEM private key", `"CERTIFICATE"`}},
		{"does not parse", DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: paths["garbage"]},
			[]string{"smtp.dkim.private_key_file:", "does not parse"}},
		{"ECDSA PKCS#8", DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: paths["ecpkcs8"]},
			[]string{"smtp.dkim.private_key_file:", "is an ECDSA key: DKIM signs with rsa-sha256", "ed25519-sha256"}},
		{"ECDSA SEC1", DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: paths["ecsec1"]},
			[]string{"smtp.dkim.private_key_file:", "is an ECDSA key"}},
		{"RSA 512", DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: paths["small"]},
			[]string{"smtp.dkim.private_key_file:", "is a 512-bit RSA key", "1024"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Host: "smtp.example.com", EmailAddress: "noreply@example.com", SenderName: "Example", DKIM: tt.dkim}
			errs := cfg.Validate()
			if len(errs) != 1 {
				t.Fatalf("Validate: %d errors, want 1: %v", len(errs), errs)
			}
			msg := errs[0].Error()
			if !errors.Is(errs[0], sdk.ErrInvalidArgument) {
				t.Errorf("%q does not match sdk.ErrInvalidArgument", msg)
			}
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q lacks %q (in order)", msg, w)
				}
				rest = rest[i+len(w):]
			}
			if !strings.HasPrefix(msg, "smtp.dkim.") {
				t.Errorf("error %q does not start with its key", msg)
			}
			for _, secret := range secrets {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q carries key material", msg)
				}
			}
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tt.want[0]) {
				t.Errorf("New: %v, want the same error", err)
			}
		})
	}
}

// TestDKIMKeyReadAtEveryNew: the key file is read by each New (so at each
// config reload), and a key replaced by a bad one is refused then.
func TestDKIMKeyReadAtEveryNew(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path, txt := writeKey(t, edKey, false)
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	cfg := config(srv, SecurityTLS)
	cfg.DKIM = DKIMConfig{Domain: testDKIMDomain, Selector: testDKIMSelector, PrivateKeyFile: path}
	first := newSender(t, cfg)

	// Rotate: a new key in the same file.
	_, edKey2, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path2, txt2 := writeKey(t, edKey2, false)
	data, err := os.ReadFile(path2)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	second := newSender(t, cfg)
	for i, s := range []*Sender{first, second} {
		if _, err := s.Send(testCtx(t, 10*time.Second), Mail{To: "user@example.org", Subject: "s", Text: "t"}); err != nil {
			t.Fatal(err)
		}
		rcv := srv.State().Mails[i].Data
		want, other := txt, txt2
		if i == 1 {
			want, other = txt2, txt
		}
		if v, err := verifyDKIM(rcv, want); err != nil || v.Err != nil {
			t.Errorf("sender %d: does not verify with its key: %v %v", i, err, v)
		}
		if v, err := verifyDKIM(rcv, other); err == nil && v.Err == nil {
			t.Errorf("sender %d: verifies with the other key", i)
		}
	}

	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "smtp.dkim.private_key_file") {
		t.Fatalf("New with a broken key file: %v", err)
	}
}

// TestDKIMDomainAlignmentWarning: a signing domain that DMARC would not align
// with the From address is allowed, with a warning.
func TestDKIMDomainAlignmentWarning(t *testing.T) {
	for _, tt := range []struct {
		from, domain string
		warn         bool
	}{
		{"noreply@example.com", "example.com", false},
		{"noreply@mail.example.com", "example.com", false},
		{"noreply@example.com", "EXAMPLE.com.", false},
		{"noreply@example.com", "other.example", true},
		{"noreply@badexample.com", "example.com", true},
	} {
		cfg := Config{Host: "smtp.example.com", EmailAddress: tt.from, SenderName: "x", DKIM: DKIMConfig{Domain: tt.domain}}
		got := false
		for _, w := range cfg.Warnings() {
			got = got || strings.HasPrefix(w, "smtp.dkim.domain")
		}
		if got != tt.warn {
			t.Errorf("from %s, d=%s: warning %v, want %v", tt.from, tt.domain, got, tt.warn)
		}
	}
}
