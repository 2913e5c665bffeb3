package integration

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
)

// BenchmarkDeliveryLatency injects 50 ms of round-trip time between the
// mail senders and the SMTP server (toxiproxy, 25 ms each way) and measures,
// per recovery, the time from the submitted recovery flow to the mail in the
// server: through the gateway (Kratos's HTTP courier → host → plugin →
// SMTP), and through Kratos v1.3.1's own SMTP courier to the same server
// through the same proxy. Medians over 30 recoveries each, same run, same
// Kratos config and pull_wait.
//
// It runs against two servers: Mailpit, which does not offer PIPELINING, so
// the gateway sends MAIL FROM, RCPT TO and DATA one round trip each; and a
// go-smtp server with implicit TLS and AUTH PLAIN that offers PIPELINING,
// as the SMTP gateways of mail providers do, so the gateway sends the
// envelope in one round trip.
func BenchmarkDeliveryLatency(b *testing.B) {
	b.Run("mailpit", func(b *testing.B) {
		benchmarkLatency(b, smtpTarget{name: "mailpit", port: env.smtpPort, caFile: env.caFile,
			delivered: func(b *testing.B, email string) bool {
				var res struct {
					Total int `json:"messages_count"`
				}
				callB(b, "GET", env.mailpitAPI+"/api/v1/search?query="+url.QueryEscape(fmt.Sprintf("to:%q", email)), nil, &res)
				return res.Total > 0
			}})
	})
	b.Run("pipelining", func(b *testing.B) {
		srv := smtptest.Start(b, smtptest.Options{Mode: smtptest.ImplicitTLS, User: env.smtpUser, Password: env.smtpPass})
		benchmarkLatency(b, smtpTarget{name: "pipelining", port: srv.Port, caFile: srv.PKI.CAFile,
			delivered: func(_ *testing.B, email string) bool {
				return slices.ContainsFunc(srv.State().Mails, func(m smtptest.Received) bool {
					return slices.Contains(m.To, email)
				})
			}})
	})
}

// smtpTarget is an SMTP server with implicit TLS that accepts env.smtpUser.
type smtpTarget struct {
	name      string
	port      int
	caFile    string
	delivered func(b *testing.B, email string) bool
}

func benchmarkLatency(b *testing.B, target smtpTarget) {
	const samples = 30
	proxy := newProxyTB(b, "smtp-rtt-"+target.name, fmt.Sprintf("127.0.0.1:%d", target.port))
	for _, dir := range []string{"upstream", "downstream"} {
		if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(`{"name":"rtt-` + dir + `","type":"latency","stream":"` + dir + `","attributes":{"latency":25}}`)); err != nil {
			b.Fatal(err)
		}
	}
	port, err := strconv.Atoi(proxy.Listen[strings.LastIndex(proxy.Listen, ":")+1:])
	if err != nil {
		b.Fatal(err)
	}

	// The gateway path: the shared Kratos, a host whose plugin sends through the proxy.
	h, stop := runHostWith(b, writeConfigTB(b, gatewayConfig(hostOptions{enabled: true, smtpPort: port, caFile: target.caFile})))
	b.Cleanup(stop)

	// The native path: a Kratos of its own with the SMTP courier.
	native, stopNative, err := env.startKratos("kratos-native-smtp-"+target.name, "bcrypt", nativeSMTPEnv(port)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stopNative)

	for b.Loop() {
		logStart := len(h.String())
		gateway := measure(b, kratosServer{public: env.kratosPublic, admin: env.kratosAdmin}, target, samples)
		kratosSMTP := measure(b, native, target, samples)
		b.ReportMetric(float64(gateway.Milliseconds()), "gateway-p50-ms")
		b.ReportMetric(float64(kratosSMTP.Milliseconds()), "kratos-smtp-p50-ms")
		b.ReportMetric(float64(gateway)/float64(kratosSMTP), "ratio")
		// Where the gateway's share went: the plugin's part is the SMTP
		// dialogue through the proxy.
		k, p, own := medianSplit(b, h.String()[logStart:])
		b.ReportMetric(k, "p50-kratos-ms")
		b.ReportMetric(p, "p50-plugin-ms")
		b.ReportMetric(own, "p50-host-own-ms")
	}
}

// measure runs n recoveries against Kratos k one after another and returns
// the median time from submission to the mail in target.
func measure(b *testing.B, k kratosServer, target smtpTarget, n int) time.Duration {
	b.Helper()
	var took []time.Duration
	for i := range n {
		email := fmt.Sprintf("latency-%s-%d@example.com", randomHex(4), i)
		body := map[string]any{"schema_id": "default", "traits": map[string]any{"email": email},
			"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": importedHash}}}}
		if status := callB(b, "POST", k.admin+"/admin/identities", body, nil); status != 201 {
			b.Fatalf("create identity: HTTP %d", status)
		}
		var flow struct {
			ID string `json:"id"`
		}
		callB(b, "GET", k.public+"/self-service/recovery/api", nil, &flow)
		start := time.Now()
		if status := callB(b, "POST", k.public+"/self-service/recovery?flow="+flow.ID, map[string]any{"method": "code", "email": email}, nil); status != 200 {
			b.Fatalf("submit recovery: HTTP %d", status)
		}
		deadline := start.Add(30 * time.Second)
		for !target.delivered(b, email) {
			if time.Now().After(deadline) {
				b.Fatalf("no mail for %s", email)
			}
			time.Sleep(2 * time.Millisecond)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took[len(took)/2]
}
