package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// rawMail fetches a mail from Mailpit exactly as it was received.
func rawMail(t *testing.T, id string) []byte {
	t.Helper()
	resp, err := client.Get(env.mailpitAPI + "/api/v1/message/" + id + "/raw")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("raw message %s: HTTP %d %v", id, resp.StatusCode, err)
	}
	return data
}

// dkimVerifies checks data's DKIM signatures against txt, published as
// it._domainkey.example.com only; it reports whether exactly one is present
// and valid.
func dkimVerifies(t *testing.T, data []byte, txt string) error {
	t.Helper()
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name != "it._domainkey.example.com" {
			return nil, errors.New("no TXT record for " + name)
		}
		return []string{txt}, nil
	}})
	switch {
	case err != nil:
		return err
	case len(verifs) != 1:
		return errors.New("want exactly one DKIM signature")
	}
	return verifs[0].Err
}

// A recovery through the real host, plugin, Kratos and Mailpit arrives
// DKIM-signed once smtp.dkim is added by a reload, and the signature of the
// mail as Mailpit holds it verifies against the public key (a changed body
// does not); a reload to an ECDSA key is refused, naming the key, and the
// last good key keeps signing.
func TestDKIMSignedRecoveryMail(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "dkim.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	txt := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pubDER)

	caLine := "  ca_file: " + env.caFile + "\n"
	dkimSection := caLine + "  dkim:\n    domain: example.com\n    selector: it\n    private_key_file: " + keyFile + "\n"
	edit(t, h, caLine, dkimSection, "applied")

	recoverAndVerify := func(step string) {
		t.Helper()
		email := uniqueEmail(t)
		createIdentity(t, email, oldPassword)
		startRecovery(t, email)
		mails := waitMails(t, email, 1)
		data := rawMail(t, mails[0].ID)
		if err := dkimVerifies(t, data, txt); err != nil {
			t.Fatalf("%s: the recovery mail's DKIM signature does not verify: %v\n%s", step, err, data)
		}
		pw := temporaryPassword(t, mails[0])
		tampered := bytes.Replace(data, []byte("http://127.0.0.1:4455/login"), []byte("http://127.0.0.1:4455/l0gin"), 1)
		if bytes.Equal(tampered, data) {
			t.Fatalf("%s: the mail does not carry the login URL to change:\n%s", step, data)
		}
		if dkimVerifies(t, tampered, txt) == nil {
			t.Errorf("%s: a changed body still verifies", step)
		}
		assertNoSecrets(t, h.String(), pw)
	}
	recoverAndVerify("after the reload that added smtp.dkim")

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecFile := filepath.Join(dir, "ecdsa.pem")
	if err := os.WriteFile(ecFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	edit(t, h, "private_key_file: "+keyFile, "private_key_file: "+ecFile, "refused")
	logs := h.String()
	if !strings.Contains(logs, "smtp.dkim.private_key_file: ") || !strings.Contains(logs, "is an ECDSA key") {
		t.Errorf("the refused reload does not name the key and the problem:\n%s", logs)
	}
	keyPEM, _ := os.ReadFile(keyFile)
	for _, material := range []string{base64.StdEncoding.EncodeToString(ecDER)[:24], string(keyPEM[40:80])} {
		if strings.Contains(logs, material) {
			t.Errorf("the log carries key material")
		}
	}
	recoverAndVerify("after a refused reload to an ECDSA key")
}
