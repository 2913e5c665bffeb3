package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePair writes a self-signed certificate and its key as PEM files.
func writePair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	write(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	write(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}

func TestListenerKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writePair(t, dir, "a")
	_, otherKey := writePair(t, dir, "b")
	absent := filepath.Join(dir, "absent.pem")

	c, err := Parse([]byte(minimal+"gate:\n  listen: 127.0.0.1:8082\ntls:\n  cert_file: "+cert+"\n  key_file: "+key+"\n"), nil)
	if err != nil {
		t.Fatalf("a valid pair and gate.listen: %v", err)
	}
	if c.Gate.Listen != "127.0.0.1:8082" || c.TLS.CertFile != cert || c.TLS.KeyFile != key || !c.TLS.Enabled() {
		t.Errorf("gate=%+v tls=%+v, want the file's values", c.Gate, c.TLS)
	}
	c, err = Parse([]byte(minimal), []string{"GATEWAY_TLS__CERT_FILE=" + cert, "GATEWAY_TLS__KEY_FILE=" + key, "GATEWAY_GATE__LISTEN=:8082"})
	if err != nil || c.TLS.CertFile != cert || c.Gate.Listen != ":8082" {
		t.Errorf("environment: %v, tls=%+v gate=%+v", err, c.TLS, c.Gate)
	}

	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"cert without key", "tls: {cert_file: " + cert + "}", []string{"tls.cert_file, tls.key_file: set both or neither"}},
		{"key without cert", "tls: {key_file: " + key + "}", []string{"tls.cert_file, tls.key_file: set both or neither"}},
		{"unreadable cert", "tls: {cert_file: " + absent + ", key_file: " + key + "}", []string{"tls.cert_file: cannot read"}},
		{"unreadable key", "tls: {cert_file: " + cert + ", key_file: " + absent + "}", []string{"tls.key_file: cannot read"}},
		{"both unreadable", "tls: {cert_file: " + absent + ", key_file: " + absent + "}", []string{"tls.cert_file: cannot read", "tls.key_file: cannot read"}},
		{"key of another certificate", "tls: {cert_file: " + cert + ", key_file: " + otherKey + "}", []string{"tls.cert_file, tls.key_file: not a PEM certificate and its private key"}},
		{"files swapped", "tls: {cert_file: " + key + ", key_file: " + cert + "}", []string{"tls.cert_file, tls.key_file: not a PEM certificate"}},
		{"gate.listen not host:port", "gate: {listen: nope}", []string{"gate.listen:"}},
		{"gate.listen without port", "gate: {listen: '127.0.0.1:'}", []string{"gate.listen:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(minimal+tt.yaml+"\n"), nil)
			if err == nil {
				t.Fatalf("Parse accepted it, want an error naming %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error = %v, want one naming %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("the error shows key material: %v", err)
			}
		})
	}
}

func TestReloadKeepsListenerKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writePair(t, dir, "a")
	cert2, key2 := writePair(t, dir, "b")
	r, _, logs := newReloader(t, minimal+"gate: {listen: 127.0.0.1:8082}\ntls: {cert_file: "+cert+", key_file: "+key+"}\n")
	write(t, r.Path, minimal+"gate: {listen: 127.0.0.1:9999}\ntls: {cert_file: "+cert2+", key_file: "+key2+"}\nenabled: false\n")
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := r.Store.Current()
	if c.Gate.Listen != "127.0.0.1:8082" || c.TLS.CertFile != cert || c.TLS.KeyFile != key {
		t.Errorf("gate=%+v tls=%+v changed without a restart", c.Gate, c.TLS)
	}
	if c.Enabled {
		t.Errorf("enabled: false of the same edit was not applied")
	}
	for _, k := range []string{`"key":"gate.listen"`, `"key":"tls.cert_file"`, `"key":"tls.key_file"`} {
		if !strings.Contains(logs.String(), k) {
			t.Errorf("no restart warning for %s:\n%s", k, logs)
		}
	}
}
