package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// BenchmarkPassThrough compares messages/s from the gateway's /courier into
// Mailpit (host → plugin over gRPC → SMTP with implicit TLS and AUTH) with
// go-mail sending the same messages straight to Mailpit from this process,
// in the same run. Kratos's courier sends one message at a time, so
// "sequential" is its shape; "concurrent" shows the headroom.
func BenchmarkPassThrough(b *testing.B) {
	benchHost(b)
	direct := directSender(b)
	body := func(i int) []byte {
		raw, _ := json.Marshal(map[string]any{
			"recipient": fmt.Sprintf("bench-%d@example.com", i), "template_type": "verification_code_valid", "message_type": "email",
			"subject": "Please verify your email address", "body": "Hi, please verify your account by entering the following code:\n\n123456\n",
		})
		return raw
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	viaGateway := func(i int) error {
		req, _ := http.NewRequest(http.MethodPost, "http://"+env.hostAddr+"/courier", bytes.NewReader(body(i)))
		req.Header.Set("Authorization", "Bearer "+env.apiKey)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	viaGoMail := func(i int) error {
		m := gomail.NewMsg()
		if err := m.From("no-reply@example.com"); err != nil {
			return err
		}
		if err := m.To(fmt.Sprintf("bench-%d@example.com", i)); err != nil {
			return err
		}
		m.Subject("Please verify your email address")
		m.SetBodyString(gomail.TypeTextPlain, "Hi, please verify your account by entering the following code:\n\n123456\n")
		return direct.DialAndSendWithContext(context.Background(), m)
	}
	for _, shape := range []struct {
		name    string
		workers int
	}{{"sequential", 1}, {"concurrent-8", 8}} {
		for _, path := range []struct {
			name string
			send func(int) error
		}{{"gateway", viaGateway}, {"direct-go-mail", viaGoMail}} {
			b.Run(shape.name+"/"+path.name, func(b *testing.B) {
				var wg sync.WaitGroup
				next := make(chan int)
				errs := make(chan error, shape.workers)
				start := time.Now()
				for range shape.workers {
					wg.Go(func() {
						for i := range next {
							if err := path.send(i); err != nil {
								errs <- err
								return
							}
						}
					})
				}
				i := 0
				for b.Loop() {
					next <- i
					i++
				}
				close(next)
				wg.Wait()
				select {
				case err := <-errs:
					b.Fatal(err)
				default:
				}
				b.ReportMetric(float64(i)/time.Since(start).Seconds(), "msg/s")
			})
		}
	}
}

func benchHost(b *testing.B) *hostProc {
	b.Helper()
	h, stop := runHostWith(b, writeBenchConfig(b))
	b.Cleanup(stop)
	return h
}

func writeBenchConfig(b *testing.B) string {
	b.Helper()
	path := b.TempDir() + "/gateway.yaml"
	if err := os.WriteFile(path, []byte(gatewayConfig(hostOptions{enabled: true})), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// directSender is go-mail set up as the gateway's plugin is: implicit TLS
// with the stack's CA, AUTH PLAIN with the stack's credentials.
func directSender(b *testing.B) *gomail.Client {
	b.Helper()
	pem, err := os.ReadFile(env.caFile)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c, err := gomail.NewClient("127.0.0.1", gomail.WithPort(env.smtpPort), gomail.WithSSL(),
		gomail.WithTLSConfig(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}),
		gomail.WithSMTPAuth(gomail.SMTPAuthPlain), gomail.WithUsername(env.smtpUser), gomail.WithPassword(env.smtpPass))
	if err != nil {
		b.Fatal(err)
	}
	return c
}
