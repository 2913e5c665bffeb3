package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// importedHash is a bcrypt (cost 12) hash of importedPassword: identities
// are imported with it, so setting up the benchmark makes Kratos hash nothing.
const (
	importedPassword = "Imported-Password-1"
	importedHash     = "$2a$12$rGG3ZO/vJ3pLTie3bTrCBeR2ldQ2Y8FV7toguHlZdxWGO/zUxIWyi"
)

// BenchmarkResetThroughput compares `gateway reset` over N identities (env
// BENCH_RESET_N, default 500) with the capacity of Kratos's admin PUT that
// sets a password, both at concurrency 4, in the same run. Kratos hashes
// every password (bcrypt 12) in both, so that is the bound; the ratio says
// what the gateway's own work (lookup, plugin, metadata, mail) costs on top.
func BenchmarkResetThroughput(b *testing.B) {
	n := 500
	if v, err := strconv.Atoi(os.Getenv("BENCH_RESET_N")); err == nil && v > 0 {
		n = v
	}
	const workers = 4
	benchHost(b) // Kratos's hooks need a gateway
	config := writeBenchConfig(b)
	for b.Loop() {
		putIDs := importIdentities(b, n)
		resetIDs := importIdentities(b, n)

		start := time.Now()
		parallel(b, putIDs, workers, func(id string) error {
			var out map[string]any
			if status := callB(b, "GET", env.kratosAdmin+"/admin/identities/"+id, nil, &out); status != http.StatusOK {
				return fmt.Errorf("get %s: HTTP %d", id, status)
			}
			body := map[string]any{"schema_id": out["schema_id"], "state": out["state"], "traits": out["traits"],
				"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"password": "New-Admin-Password-" + id[:8]}}}}
			if status := callB(b, "PUT", env.kratosAdmin+"/admin/identities/"+id, body, nil); status != http.StatusOK {
				return fmt.Errorf("put %s: HTTP %d", id, status)
			}
			return nil
		})
		putRate := float64(n) / time.Since(start).Seconds()

		list := filepath.Join(b.TempDir(), "ids.txt")
		if err := os.WriteFile(list, []byte(strings.Join(resetIDs, "\n")), 0o600); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		cmd := exec.Command(env.gatewayBin, "reset", "--config", config, "--file", list, "--concurrency", strconv.Itoa(workers))
		cmd.Env = append(os.Environ(), "GATEWAY_SMTP__AUTHORIZATION_CODE="+env.smtpPass, "GATEWAY_SECRETS__CIPHER="+env.cipher)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), fmt.Sprintf("%d reset, 0 skipped, 0 failed", n)) {
			b.Fatalf("gateway reset: %v\n%s", err, tailString(string(out)))
		}
		resetRate := float64(n) / time.Since(start).Seconds()

		b.ReportMetric(putRate, "kratos-put/s")
		b.ReportMetric(resetRate, "gateway-reset/s")
		b.ReportMetric(resetRate/putRate, "ratio")
	}
}

// importIdentities creates n identities with an imported password hash.
func importIdentities(b *testing.B, n int) []string {
	b.Helper()
	ids := make([]string, n)
	idx := make([]string, n)
	for i := range idx {
		idx[i] = strconv.Itoa(i)
	}
	run := randomHex(4)
	var mu sync.Mutex
	parallel(b, idx, 8, func(s string) error {
		i, _ := strconv.Atoi(s)
		var out struct {
			ID string `json:"id"`
		}
		body := map[string]any{"schema_id": "default", "traits": map[string]any{"email": fmt.Sprintf("bench-%s-%d@example.com", run, i)},
			"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": importedHash}}}}
		if status := callB(b, "POST", env.kratosAdmin+"/admin/identities", body, &out); status != http.StatusCreated {
			return fmt.Errorf("create identity: HTTP %d", status)
		}
		mu.Lock()
		ids[i] = out.ID
		mu.Unlock()
		return nil
	})
	return ids
}

func parallel(b *testing.B, items []string, workers int, f func(string) error) {
	b.Helper()
	next := make(chan string)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for it := range next {
				if err := f(it); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// callB is a small JSON client for benchmarks (call needs a *testing.T).
func callB(b *testing.B, method, url string, body, out any) int {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func tailString(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
