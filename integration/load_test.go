package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// 1,000 pass-through messages from 50 concurrent senders: every one arrives
// exactly once, the host's memory stays bounded, and no goroutine is left
// behind. The measured numbers go to the test log (see RELIABILITY.md).
func TestLoadPassThrough(t *testing.T) {
	const senders, perSender = 50, 20
	h := startHost(t, hostOptions{enabled: true})
	run := randomHex(6)
	baseline := steadyGoroutines(t)

	transport := &http.Transport{MaxIdleConnsPerHost: senders}
	client := &http.Client{Transport: transport, Timeout: 60 * time.Second}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	start := time.Now()
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				to := fmt.Sprintf("load-%s-%d-%d@example.com", run, s, i)
				body, _ := json.Marshal(map[string]any{
					"recipient": to, "template_type": "verification_code_valid", "message_type": "email",
					"subject": "Please verify your email address " + run,
					"body":    "Hi, please verify your account by entering the following code:\n\n123456\n",
				})
				req, _ := http.NewRequest(http.MethodPost, "http://"+env.hostAddr+"/courier", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+env.apiKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s: %v %v", to, err, resp))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	transport.CloseIdleConnections()
	if len(failed) > 0 {
		t.Fatalf("%d of %d messages were not accepted, e.g. %s", len(failed), senders*perSender, failed[0])
	}

	// Every message arrived exactly once.
	got := map[string]int{}
	var res struct {
		Total    int `json:"messages_count"`
		Messages []struct {
			To []struct {
				Address string `json:"Address"`
			} `json:"To"`
		} `json:"messages"`
	}
	q := url.QueryEscape(fmt.Sprintf("subject:%q", run))
	// Synchronously, the gateway answers 200 once Mailpit committed the
	// mail; through the outbox, once it stored the message, and the mails
	// go out after: read until every one arrived, or the count has stopped
	// growing for the deadline.
	for deadline, last := time.Now().Add(30*time.Second), -1; ; {
		if status := call(t, "GET", env.mailpitAPI+"/api/v1/search?limit=5000&query="+q, nil, nil, &res); status != http.StatusOK {
			t.Fatalf("Mailpit search: HTTP %d", status)
		}
		if len(res.Messages) >= senders*perSender || len(res.Messages) == last && time.Now().After(deadline) {
			break
		}
		last = len(res.Messages)
		time.Sleep(200 * time.Millisecond)
	}
	for _, m := range res.Messages {
		for _, to := range m.To {
			got[to.Address]++
		}
	}
	for s := range senders {
		for i := range perSender {
			if n := got[fmt.Sprintf("load-%s-%d-%d@example.com", run, s, i)]; n != 1 {
				t.Errorf("sender %d message %d arrived %d times", s, i, n)
			}
		}
	}

	hostRSS, pluginRSS := peakRSS(t, h.pid), peakRSS(t, childPid(t, h.pid))
	t.Logf("load: %d messages from %d senders in %s (%.0f msg/s); peak RSS host %d MiB, plugin %d MiB",
		senders*perSender, senders, elapsed.Round(time.Millisecond), float64(senders*perSender)/elapsed.Seconds(), hostRSS>>10, pluginRSS>>10)
	if hostRSS > 256<<10 {
		t.Errorf("host peak RSS %d MiB: memory is not bounded", hostRSS>>10)
	}

	// No goroutine outlives the load (idle keep-alive connections closed).
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := goroutines(t)
		if n <= baseline+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d after the load, %d before: a leak", n, baseline)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var goroutineGauge = regexp.MustCompile(`(?m)^go_goroutines (\d+)$`)

// steadyGoroutines waits until the host's goroutine count holds still for
// a second and returns it: a host with the outbox starts River's queue
// maintenance (a dozen goroutines) once it is elected leader, a moment
// after it is ready.
func steadyGoroutines(t *testing.T) int {
	t.Helper()
	last, same := goroutines(t), 0
	for deadline := time.Now().Add(20 * time.Second); same < 4 && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		n := goroutines(t)
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}

// goroutines reads the host's go_goroutines gauge from /metrics.
func goroutines(t *testing.T) int {
	t.Helper()
	var raw []byte
	call(t, "GET", "http://"+env.hostAddr+"/metrics", nil, nil, &raw)
	m := goroutineGauge.FindSubmatch(raw)
	if m == nil {
		t.Fatal("no go_goroutines in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// peakRSS is a process's high-water resident set in KiB (VmHWM).
func peakRSS(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no VmHWM for pid %d", pid)
	return 0
}
