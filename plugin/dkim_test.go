package plugin

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

// writePKCS8 writes key to path as a PKCS#8 PEM and returns the DER bytes
// (to check that no error quotes them) and, for Ed25519, its DKIM TXT record.
func writePKCS8(t *testing.T, path string, key crypto.Signer) (der []byte, txt string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if pub, ok := key.Public().(ed25519.PublicKey); ok {
		txt = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	return der, txt
}

func verifies(data []byte, txt string) bool {
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name != "gw._domainkey.example.com" {
			return nil, errors.New("no such record")
		}
		return []string{txt}, nil
	}})
	return err == nil && len(verifs) == 1 && verifs[0].Err == nil
}

// Both kinds of mail the plugin sends, the password mail and Kratos's
// pass-through one, are DKIM-signed; Configure (which the host calls at
// every reload and for `gateway config check`) re-reads the key, refuses a
// bad one naming the key and quoting nothing of it, and keeps the last good
// one in effect.
func TestDKIMSignsEveryMailAndReloadsItsKey(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	gw := sdktest.Connect(t, New())
	ctx := context.Background()
	keyFile := filepath.Join(t.TempDir(), "dkim.pem")
	_, key1, _ := ed25519.GenerateKey(rand.Reader)
	_, txt1 := writePKCS8(t, keyFile, key1)
	cfg := json.RawMessage(fmt.Sprintf(`{
		"smtp": {"host": "127.0.0.1", "port": "%d", "email_address": %q, "sender_name": "Example Accounts",
		         "authorization_code": %q, "security": "tls", "ca_file": %q,
		         "dkim": {"domain": "example.com", "selector": "gw", "private_key_file": %q}}
	}`, srv.Port, smtptest.User, smtptest.Password, srv.PKI.CAFile, keyFile))
	if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	send := func() []byte {
		t.Helper()
		_, err := gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "alice@example.com", Password: &sdk.PasswordMessage{
			Password: "Temp-Pw-123456", ExpiresAt: time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC),
			LoginURL: "https://accounts.example.com/login", IdentityID: "id-1", IdentityTraits: json.RawMessage(`{"email":"alice@example.com"}`),
		}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = gw.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "alice@example.com", Rendered: &sdk.RenderedMessage{
			Subject: "Recover access to your account", TextBody: "Your recovery code is 482913\n", HTMLBody: "<p>Your recovery code is 482913</p>",
		}})
		if err != nil {
			t.Fatal(err)
		}
		mails := srv.State().Mails
		return append(append([]byte(nil), mails[len(mails)-2].Data...), append([]byte{0}, mails[len(mails)-1].Data...)...)
	}
	check := func(step, txt string) {
		t.Helper()
		pair := send()
		pw, rendered, _ := bytes.Cut(pair, []byte{0})
		for name, data := range map[string][]byte{"password mail": pw, "pass-through mail": rendered} {
			if !verifies(data, txt) {
				t.Errorf("%s: %s does not verify with the expected key:\n%s", step, name, data)
			}
		}
	}
	check("first config", txt1)

	// A bad key on reload is refused, and the good one stays in effect.
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := writePKCS8(t, keyFile, ec)
	_, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: cfg})
	if err == nil || !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Configure with an ECDSA key = %v, want sdk.ErrInvalidArgument", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "smtp.dkim.private_key_file: ") || !strings.Contains(msg, "is an ECDSA key") ||
		strings.Contains(msg, base64.StdEncoding.EncodeToString(ecDER)[:24]) {
		t.Errorf("Configure error %q: want the key name and the problem, no key material", msg)
	}
	check("after a refused reload", txt1)

	// A rotated key is read at the next reload.
	_, key2, _ := ed25519.GenerateKey(rand.Reader)
	_, txt2 := writePKCS8(t, keyFile, key2)
	if _, err := gw.Configure(ctx, &sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	check("after the key was rotated", txt2)
}
