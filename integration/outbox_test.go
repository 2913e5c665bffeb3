package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
)

// outboxConfig is the shared stack's gateway config with the durable
// outbox on dsn.
func outboxConfig(dsn, migrate string) string {
	if u, err := url.Parse(dsn); err == nil {
		if pass, ok := u.User.Password(); ok {
			observed.secret(pass)
		}
	}
	return gatewayConfig(hostOptions{enabled: true, cooldown: "0s"}) + queueSection(dsn, migrate)
}

// queueSection is the queue section of a host on the outbox at dsn.
func queueSection(dsn, migrate string) string {
	return fmt.Sprintf("queue:\n  postgres_dsn: %q\n  migrate: %s\n  ready_max_age: 30s\n", dsn, migrate)
}

// verificationMessage is a pass-through courier body with a unique code.
func verificationMessage(t *testing.T, to string) []byte {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"recipient": to, "template_type": "verification_code_valid", "message_type": "email",
		"subject": "Please verify your email address", "body": "Your verification code is " + randomHex(3) + "\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// With queue.postgres_dsn, through real Kratos, the host and plugin
// binaries, Mailpit and a real PostgreSQL: a recovery is answered at once
// and its mail goes out from the outbox, its password logs in; Kratos's
// retry of a message already taken adds no second mail; with PostgreSQL
// down /courier answers 503 (Kratos keeps the message), readiness says
// why, and a password change still works and is notified from memory; once
// PostgreSQL is back the message goes out.
func TestOutboxJourneys(t *testing.T) {
	pg := pgtest.NewCluster(t)
	h := startHostWithConfig(t, outboxConfig(pg.NewDatabase(t), "auto"))

	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	if status, _ := login(t, email, temp); status != http.StatusOK {
		t.Errorf("login with the temporary password from the outbox: HTTP %d, want 200", status)
	}
	waitFor(t, func() bool {
		msgs := courierMessages(t, email)
		return len(msgs) == 1 && msgs[0].Status == "sent" && msgs[0].SendCount == 1
	}, "Kratos's message sent at the first try")
	for _, want := range []string{`"msg":"courier message queued"`, `"msg":"job done"`, `"queue":"recovery"`} {
		if !strings.Contains(h.String(), want) {
			t.Errorf("the host's log lacks %s", want)
		}
	}

	// Kratos sends a message again when an answer got lost: the second
	// copy is recognised, and one mail goes out.
	other := uniqueEmail(t)
	body := verificationMessage(t, other)
	for i, want := range []string{"queued", "duplicate"} {
		status, out := postCourier(t, "Bearer "+env.apiKey, body)
		if status != http.StatusOK || out["status"] != want {
			t.Fatalf("courier call %d: HTTP %d %v, want 200 %s", i+1, status, out, want)
		}
	}
	waitMails(t, other, 1)
	time.Sleep(time.Second)
	if n := len(mailsTo(t, other)); n != 1 {
		t.Errorf("mails for a message sent twice = %d, want 1", n)
	}

	// PostgreSQL down: nothing is taken that could be lost.
	pg.Stop(t)
	third := uniqueEmail(t)
	body = verificationMessage(t, third)
	status, out := postCourier(t, "Bearer "+env.apiKey, body)
	if status != http.StatusServiceUnavailable || !strings.Contains(out["error"], "Kratos keeps it and retries") {
		t.Errorf("courier with PostgreSQL down: HTTP %d %v, want 503 saying Kratos retries", status, out)
	}
	var ready map[string]any
	if status := call(t, "GET", "http://"+env.hostAddr+"/health/ready", nil, nil, &ready); status != http.StatusServiceUnavailable ||
		!strings.Contains(fmt.Sprint(ready), "queue") {
		t.Errorf("readiness with PostgreSQL down: HTTP %d %v, want 503 naming the queue", status, ready)
	}
	// A user changing their password meanwhile is not held up (the hooks
	// take the identity's lock across hosts best-effort), and the notice
	// the outbox cannot take goes out from the host's memory.
	fourth := uniqueEmail(t)
	createIdentity(t, fourth, oldPassword)
	status, s := login(t, fourth, oldPassword)
	if status != http.StatusOK {
		t.Fatalf("login with PostgreSQL down: HTTP %d", status)
	}
	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow with PostgreSQL down: HTTP %d\n%s", status, body)
	}
	waitNotice(t, fourth, subjectPasswordChanged)
	if !strings.Contains(h.String(), `"msg":"notice kept in this host's memory: the outbox did not take it"`) {
		t.Errorf("the host's log does not say the notice stayed in memory:\n%s", h)
	}
	pg.Start(t)
	waitFor(t, func() bool {
		status, _ := postCourier(t, "Bearer "+env.apiKey, body)
		return status == http.StatusOK
	}, "the message taken once PostgreSQL is back")
	waitMails(t, third, 1)
	waitFor(t, func() bool {
		return call(t, "GET", "http://"+env.hostAddr+"/health/ready", nil, nil, nil) == http.StatusOK
	}, "readiness back")
}

// queue.migrate: manual on a database without the schema stops the start
// with what to run; auto migrates.
func TestOutboxSchemaAtStart(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	code, out := runGateway(t, "serve", "--config", writeConfig(t, outboxConfig(dsn, "manual")))
	if code == 0 || !strings.Contains(out, "gateway queue migrate") || strings.Contains(out, dsn) {
		t.Errorf("serve on an unmigrated database: exit %d, want an error naming gateway queue migrate, without the DSN:\n%s", code, out)
	}
}

// A notice stored in the outbox outlives the host that was asked for it:
// with SMTP down, host A fails to send a "password changed" notice and is
// stopped (without the outbox the notice would be lost with it); host B, on
// the same outbox with SMTP back, sends it, once.
func TestOutboxNoticeOutlivesItsHost(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	queue := queueSection(dsn, "auto") + "notices:\n  retry_backoff: 1s\n"
	a, stopA := runHostWith(t, writeConfig(t, gatewayConfig(hostOptions{enabled: true, smtpPort: closedPort(t)})+queue))
	t.Cleanup(stopA)

	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	status, s := login(t, email, oldPassword)
	if status != http.StatusOK {
		t.Fatalf("login: HTTP %d", status)
	}
	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow: HTTP %d\n%s", status, body)
	}
	waitFor(t, func() bool {
		for _, l := range logLines(a.String()) {
			if l["msg"] == "notice not sent; trying again later" && l["identity_id"] == id.ID && l["store"] == "outbox" {
				return true
			}
		}
		return false
	}, "host A failing to send the notice, kept in the outbox")
	stopA()
	if strings.Contains(a.String(), "notices lost at shutdown") {
		t.Errorf("host A lost notices at shutdown:\n%s", a)
	}
	if n := len(noticesTo(t, email, subjectPasswordChanged)); n != 0 {
		t.Fatalf("%d notices arrived while SMTP was down", n)
	}

	b := startHostWithConfig(t, gatewayConfig(hostOptions{enabled: true})+queue)
	waitNotice(t, email, subjectPasswordChanged)
	waitFor(t, func() bool { return strings.Contains(b.String(), `"msg":"notice sent"`) }, "host B logging the notice sent")
	time.Sleep(time.Second)
	if n := len(noticesTo(t, email, subjectPasswordChanged)); n != 1 {
		t.Errorf("%d notices arrived, want exactly 1", n)
	}
}

// startHostWithConfig runs `gateway serve` on cfg until the test ends.
func startHostWithConfig(t *testing.T, cfg string) *hostProc {
	t.Helper()
	h, stop := runHostWith(t, writeConfig(t, cfg))
	t.Cleanup(stop)
	return h
}

// courierOutcome posts body to the host's /courier with auth and returns
// what became of it (settled).
func courierOutcome(t *testing.T, h *hostProc, auth string, body []byte) (int, string) {
	t.Helper()
	status, out := postCourier(t, auth, body)
	return settled(t, h, status, out)
}

// waitRetried waits until the recovery message for the identity id at to
// failed twice and is kept for another try: by Kratos, which sends it again
// (synchronous mode), or by the outbox, which retries its job.
func waitRetried(t *testing.T, h *hostProc, to, id string) {
	t.Helper()
	if !queueMode() {
		waitFor(t, func() bool {
			msgs := courierMessages(t, to)
			return len(msgs) == 1 && msgs[0].SendCount >= 2
		}, "Kratos retrying the message the gateway could not send")
		return
	}
	waitFor(t, func() bool {
		n := 0
		for _, l := range logLines(h.String()) {
			if l["event"] == "job_retry" && l["identity_id"] == id {
				n++
			}
		}
		return n >= 2
	}, "the outbox retrying the job the gateway could not send")
}

// queueMode says whether the suite runs through the outbox
// (INTEGRATION_QUEUE=postgres, see withQueueMode).
func queueMode() bool { return os.Getenv("INTEGRATION_QUEUE") == "postgres" }

// settled is what became of one courier call in either mode, as status and
// error: the answer itself, or, when the outbox took the message, how its
// job ended in h's log: done (200), or discarded or retried with the status
// and error the synchronous answer would have carried. The rules are the
// same in both modes; only where they are told differs.
func settled(t *testing.T, h *hostProc, status int, out map[string]string) (int, string) {
	t.Helper()
	if status != http.StatusOK || out["delivery"] != "queued" {
		return status, out["error"]
	}
	job, err := strconv.ParseInt(out["job"], 10, 64)
	if err != nil {
		t.Fatalf("the outbox's answer %v names no job", out)
	}
	var end map[string]any
	waitFor(t, func() bool {
		for _, l := range logLines(h.String()) {
			if id, _ := l["job_id"].(float64); int64(id) != job {
				continue
			}
			switch l["event"] {
			case "job_done", "job_discarded", "job_retry":
				end = l
				return true
			}
		}
		return false
	}, fmt.Sprintf("the end of job %d in the host log", job))
	if end["event"] == "job_done" {
		return http.StatusOK, ""
	}
	code, _ := end["status"].(float64)
	msg, _ := end["error"].(string)
	return int(code), msg
}
