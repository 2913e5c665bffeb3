package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// newProxy puts a toxiproxy (as a library, on loopback) in front of
// upstream; faults are toxics added and removed while the journey runs.
func newProxy(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	return newProxyTB(t, name, upstream)
}

// newProxyTB is newProxy for tests and benchmarks.
func newProxyTB(t testing.TB, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(server, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("start toxiproxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, json string) {
	t.Helper()
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(json)); err != nil {
		t.Fatalf("add toxic %s: %v", json, err)
	}
}

func removeToxic(t *testing.T, p *toxiproxy.Proxy, name string) {
	t.Helper()
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("remove toxic %s: %v", name, err)
	}
}

func proxyPort(t *testing.T, p *toxiproxy.Proxy) int {
	t.Helper()
	_, port, _ := strings.Cut(p.Listen, ":")
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("proxy address %q: %v", p.Listen, err)
	}
	return n
}

// waitLog waits until the host logged needle, as proof the fault was hit.
func waitLog(t *testing.T, h *hostProc, needle string) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for !strings.Contains(h.String(), needle) {
		if time.Now().After(deadline) {
			t.Fatalf("the host never logged %q:\n%s", needle, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastMailWins checks the rule of every fault: once it cleared and Kratos
// retried, the recovery was not dropped, and the password that logs in is
// the one in the last mail received.
func lastMailWins(t *testing.T, email string) {
	t.Helper()
	waitMails(t, email, 1)
	waitCourierStatus(t, email, "sent")
	mails := mailsTo(t, email) // newest first, all of them once Kratos is done
	newest := temporaryPassword(t, mails[0])
	for _, m := range mails[1:] {
		if p := temporaryPassword(t, m); p != newest {
			if status, _ := login(t, email, p); status != http.StatusBadRequest {
				t.Errorf("the password of an older mail still logs in")
			}
		}
	}
	if status, _ := login(t, email, newest); status != http.StatusOK {
		t.Errorf("the password of the last mail does not log in: HTTP %d", status)
	}
}

func faultHost(t *testing.T, o hostOptions, extra string) *hostProc {
	t.Helper()
	h, stop := runHostWith(t, writeConfig(t, gatewayConfig(o)+extra))
	t.Cleanup(stop)
	return h
}

// The SMTP connection dies in the middle of DATA: Kratos gets a 5xx and
// retries; the user ends up with exactly the password of the mail they got.
func TestFaultSMTPResetDuringData(t *testing.T) {
	p := newProxy(t, "smtp", fmt.Sprintf("127.0.0.1:%d", env.smtpPort))
	h := faultHost(t, hostOptions{enabled: true, smtpPort: proxyPort(t, p)}, "")
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	// Close the client's stream after the handshake and commands, inside
	// the message body (calibrated: the dialogue before DATA is < 2 KiB).
	addToxic(t, p, `{"name":"cut","type":"limit_data","stream":"upstream","attributes":{"bytes":2600}}`)
	startRecovery(t, email)
	waitLog(t, h, `"msg":"recovery reset failed"`)
	if !strings.Contains(h.String(), "smtp data") {
		t.Errorf("the failure was not in DATA:\n%s", h)
	}
	removeToxic(t, p, "cut")
	lastMailWins(t, email)
}

// The SMTP server is too slow: the delivery's deadline ends the request
// long before Kratos's 30s timeout, and Kratos's retry succeeds.
func TestFaultSMTPTimeout(t *testing.T) {
	p := newProxy(t, "smtp", fmt.Sprintf("127.0.0.1:%d", env.smtpPort))
	h := faultHost(t, hostOptions{enabled: true, smtpPort: proxyPort(t, p)}, "timeouts:\n  smtp: 2s\n")
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	addToxic(t, p, `{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":4000}}`)
	startRecovery(t, email)
	waitLog(t, h, `"msg":"recovery reset failed"`)
	if !strings.Contains(h.String(), `"status":504`) {
		t.Errorf("a timed-out delivery did not answer 504:\n%s", h)
	}
	removeToxic(t, p, "slow")
	lastMailWins(t, email)
}

// Kratos's admin API is down, then slow: the host answers 5xx within its
// deadline, changes nothing it cannot finish, and Kratos's retry succeeds.
func TestFaultKratosAdminDownAndSlow(t *testing.T) {
	p := newProxy(t, "kratos-admin", strings.TrimPrefix(env.kratosAdmin, "http://"))
	k := kratosServer{public: env.kratosPublic, admin: "http://" + p.Listen}
	h := faultHost(t, hostOptions{enabled: true, kratos: &k}, "")

	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	addToxic(t, p, `{"name":"down","type":"reset_peer","stream":"downstream","attributes":{"timeout":0}}`)
	startRecovery(t, email)
	waitLog(t, h, "kratos admin API unavailable")
	removeToxic(t, p, "down")
	lastMailWins(t, email)

	email = uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	addToxic(t, p, `{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":4000}}`)
	startRecovery(t, email)
	waitLog(t, h, `"status":504`)
	removeToxic(t, p, "slow")
	lastMailWins(t, email)
}

// The plugin process is killed while it delivers: the host answers 503,
// relaunches the plugin for the next call, and Kratos's retry delivers.
func TestFaultPluginKilledMidRequest(t *testing.T) {
	p := newProxy(t, "smtp", fmt.Sprintf("127.0.0.1:%d", env.smtpPort))
	h := faultHost(t, hostOptions{enabled: true, smtpPort: proxyPort(t, p)}, "")
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	// Hold the delivery in the SMTP dialogue so the kill lands mid-request.
	addToxic(t, p, `{"name":"hold","type":"latency","stream":"downstream","attributes":{"latency":1500}}`)
	startRecovery(t, email)
	time.Sleep(time.Second)
	plugin := childPid(t, h.pid)
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitLog(t, h, `"msg":"recovery reset failed"`)
	removeToxic(t, p, "hold")
	lastMailWins(t, email)
	waitLog(t, h, "relaunched")
	var metrics []byte
	call(t, "GET", "http://"+env.hostAddr+"/metrics", nil, nil, &metrics)
	if !strings.Contains(string(metrics), "kratos_email_gateway_plugin_restarts_total 1") {
		t.Errorf("the restart was not counted")
	}
}

// childPid finds the plugin: the host's only child process. Any of the
// host's threads may have started it, so every thread's list is read.
func childPid(t *testing.T, parent int) int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", parent))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("list the host's threads: %v", err)
	}
	var fields []string
	for _, task := range tasks {
		raw, err := os.ReadFile(task)
		if err != nil {
			continue // the thread ended
		}
		fields = append(fields, strings.Fields(string(raw))...)
	}
	if len(fields) != 1 {
		t.Fatalf("the host has children %q, want exactly the plugin", fields)
	}
	pid, _ := strconv.Atoi(fields[0])
	return pid
}
