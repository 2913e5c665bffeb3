package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
)

// The benchmarks of the durable outbox (queue.postgres_dsn): the recovery
// burst's outbox variant (burst_bench_test.go), the latency of a login code
// mailed while recoveries are queued (BenchmarkLoginCodeLatency) and the
// time /courier takes to answer (BenchmarkCourierAnswer).

// timingProxy sits between a Kratos and a gateway host and times every
// POST /courier: when Kratos's courier handed the message over and when
// the gateway answered, as Kratos's courier waits for it. Everything else
// (the password and login hooks) goes through untouched. It costs each
// call a loopback hop, against the gateway.
type timingProxy struct {
	addr  string
	mu    sync.Mutex
	calls []courierCall
}

// courierCall is one POST /courier as the proxy saw it.
type courierCall struct {
	recipient, template string
	start, end          time.Time
	status              int
}

// startTimingProxy forwards 127.0.0.1:<free port> to the host at target
// (host:port) until the benchmark ends.
func startTimingProxy(b testing.TB, target string) *timingProxy {
	b.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &timingProxy{addr: l.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/courier" {
			rp.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m struct {
			Recipient    string `json:"recipient"`
			TemplateType string `json:"template_type"`
		}
		_ = json.Unmarshal(body, &m)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(sw, r)
		c := courierCall{recipient: m.Recipient, template: m.TemplateType, start: start, end: time.Now(), status: sw.status}
		p.mu.Lock()
		p.calls = append(p.calls, c)
		p.mu.Unlock()
	})}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return p
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// since returns the calls that started at or after t.
func (p *timingProxy) since(t time.Time) []courierCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []courierCall
	for _, c := range p.calls {
		if !c.start.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

// answerTimes are the answer times of calls, in ms: p50, p95 and the
// number of calls that were not answered 2xx.
func answerTimes(calls []courierCall) (p50, p95 float64, failed int) {
	var ms []float64
	for _, c := range calls {
		ms = append(ms, float64(c.end.Sub(c.start).Microseconds())/1000)
		if c.status/100 != 2 {
			failed++
		}
	}
	return percentile(ms, 50), percentile(ms, 95), failed
}

// courierPace splits the time Kratos's courier took to hand calls over
// (from the first call's start to the last call's end) into: waiting for
// the gateway's answers, pauses of 90 ms or more between two calls (the
// courier's pull_wait sleeps between batches, or waiting for new
// messages), and the shorter gaps between calls, Kratos's own work per
// message (its status writes); p50 of those gaps in ms.
type courierPace struct {
	span, answering, sleeping, between time.Duration
	sleeps                             int
	gapP50                             float64
}

func paceOf(calls []courierCall) courierPace {
	calls = slices.Clone(calls)
	slices.SortFunc(calls, func(a, b courierCall) int { return a.start.Compare(b.start) })
	var p courierPace
	if len(calls) == 0 {
		return p
	}
	p.span = calls[len(calls)-1].end.Sub(calls[0].start)
	var gaps []float64
	for i, c := range calls {
		p.answering += c.end.Sub(c.start)
		if i == 0 {
			continue
		}
		gap := c.start.Sub(calls[i-1].end)
		if gap >= 90*time.Millisecond {
			p.sleeping += gap
			p.sleeps++
			continue
		}
		p.between += gap
		gaps = append(gaps, ms(gap))
	}
	p.gapP50 = percentile(gaps, 50)
	return p
}

func (p courierPace) String() string {
	return fmt.Sprintf("Kratos's courier took %.1f s to hand them over: %.1f s waiting for the answers, %.1f s in %d pauses of 90 ms or more (pull_wait), "+
		"%.1f s of its own work between calls (p50 %.1f ms a message)",
		p.span.Seconds(), p.answering.Seconds(), p.sleeping.Seconds(), p.sleeps, p.between.Seconds(), p.gapP50)
}

// percentile is the nearest-rank percentile of v (0 for none).
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// gatewayStack is a gateway host of a benchmark's own (its own listen
// address, with or without the outbox) and the Kratos wired to it through a
// timingProxy.
type gatewayStack struct {
	kratos kratosServer
	listen string // the host's
	host   *hostProc
	proxy  *timingProxy
	dsn    string // the outbox's; "" for the synchronous gateway
	stop   func()
}

// startGatewayStack starts Kratos name (with kratosEnv) and a gateway host
// for it, with the outbox on outboxDSN unless that is empty. stop ends
// both; it also runs when the benchmark ends.
func startGatewayStack(b *testing.B, name, outboxDSN string, kratosEnv ...string) *gatewayStack {
	b.Helper()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort())
	s := &gatewayStack{listen: listen, proxy: startTimingProxy(b, listen), dsn: outboxDSN}
	k, stopKratos, err := env.startKratosFor(name, "bcrypt", "http://"+s.proxy.addr, kratosEnv...)
	if err != nil {
		b.Fatal(err)
	}
	s.kratos = k
	cfg := gatewayConfig(hostOptions{enabled: true, kratos: &k, listen: listen})
	if outboxDSN != "" {
		if u, err := url.Parse(outboxDSN); err == nil {
			if pass, ok := u.User.Password(); ok {
				observed.secret(pass)
			}
		}
		cfg += outboxQueueConfig(outboxDSN)
	}
	h, stopHost := runHostReady(b, writeConfigTB(b, cfg), "http://"+listen+"/health/ready", http.DefaultClient)
	s.host = h
	var once sync.Once
	s.stop = func() { once.Do(func() { stopHost(); stopKratos() }) }
	b.Cleanup(s.stop)
	return s
}

// outboxQueueConfig is the queue section of a benchmark's gateway with the
// outbox on dsn: the defaults but for BENCH_OUTBOX_WORKERS (queue.workers)
// and BENCH_OUTBOX_RECOVERY_WORKERS (queue.recovery_workers), when set.
func outboxQueueConfig(dsn string) string {
	cfg := fmt.Sprintf("queue:\n  postgres_dsn: %q\n  migrate: auto\n", dsn)
	if w := os.Getenv("BENCH_OUTBOX_WORKERS"); w != "" {
		cfg += "  workers: " + w + "\n"
	}
	if w := os.Getenv("BENCH_OUTBOX_RECOVERY_WORKERS"); w != "" {
		cfg += "  recovery_workers: " + w + "\n"
	}
	return cfg
}

// plainDSN creates database name in the benchmark's cluster and returns a
// DSN for the gateway's outbox (pgx takes no Kratos pool parameters).
func (pg *postgres) plainDSN(b *testing.B, name string) string {
	pg.run(b, "createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.port), "-U", "postgres", name)
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, name)
}

// riverStats are the jobs of one queue, from the outbox's river_job table:
// how long they waited from insertion to a worker taking them (River's
// fetch latency plus any wait for a free worker), how long the last attempt
// ran, in ms (p50, p95), and how many needed more than one attempt.
type riverStats struct {
	jobs                       int
	waitP50, waitP95           float64
	runP50, runP95             float64
	retried, notDone           int
	firstCreated, lastFinished time.Time
}

// readRiverStats reads the riverStats of the jobs of queue created at or
// after since.
func readRiverStats(b *testing.B, dsn, queue string, since time.Time) riverStats {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatalf("connect to the outbox database: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, `SELECT created_at, attempted_at, finalized_at, attempt, state FROM river_job
		WHERE queue = $1 AND created_at >= $2 ORDER BY id`, queue, since)
	if err != nil {
		b.Fatalf("read river_job: %v", err)
	}
	var st riverStats
	var waits, runs []float64
	for rows.Next() {
		var created time.Time
		var attempted, finalized *time.Time
		var attempt int
		var state string
		if err := rows.Scan(&created, &attempted, &finalized, &attempt, &state); err != nil {
			b.Fatalf("read river_job: %v", err)
		}
		st.jobs++
		if st.firstCreated.IsZero() || created.Before(st.firstCreated) {
			st.firstCreated = created
		}
		if attempt > 1 {
			st.retried++
		}
		if state != "completed" || attempted == nil || finalized == nil {
			st.notDone++
			continue
		}
		if finalized.After(st.lastFinished) {
			st.lastFinished = *finalized
		}
		if attempt == 1 {
			waits = append(waits, float64(attempted.Sub(created).Microseconds())/1000)
		}
		runs = append(runs, float64(finalized.Sub(*attempted).Microseconds())/1000)
	}
	if err := rows.Err(); err != nil {
		b.Fatalf("read river_job: %v", err)
	}
	st.waitP50, st.waitP95 = percentile(waits, 50), percentile(waits, 95)
	st.runP50, st.runP95 = percentile(runs, 50), percentile(runs, 95)
	return st
}

// BenchmarkLoginCodeLatency measures, through real Kratos (its passwordless
// login by code: the courier's login_code_valid mail), the time from the
// submitted login to the code's mail in Mailpit: on an idle system and
// while 200 recoveries are queued, with the synchronous gateway and with
// the outbox, on sqlite and on PostgreSQL, in one run.
//
// Each phase sends 30 login codes, one every 100 ms, each timed on its
// own: paced, not one after another's arrival, so that every code is sent
// while the recoveries are still queued (one after another, only the first
// code would meet the backlog). Loaded: 200 recoveries are submitted at
// once (8 clients), and the codes start once all are submitted. Each code's
// time is split at the moment Kratos's courier handed it to the gateway (a
// timingProxy between them): the wait in Kratos's queue, and the gateway's
// part until the mail is in Mailpit.
//
// With the outbox on sqlite its database is a pgtest one; on PostgreSQL it
// is a database of its own in Kratos's cluster.
//
// With the outbox, the same is then measured with Kratos left out
// ("outbox-direct-*"): the 200 recovery messages are POSTed to /courier, 8
// at a time, and the codes, as login_code_valid messages, start once the
// host took all 200 (they are queued in the outbox, being worked), each
// timed from its POST. That is the gateway's own share: whether a code
// waits behind the recovery jobs (its own queue says it should not).
func BenchmarkLoginCodeLatency(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchmarkLoginCode(b, "sqlite", func(string) []string { return nil }, func() string { return pgtest.NewDatabase(b) })
	})
	b.Run("postgres", func(b *testing.B) {
		pg := startPostgres(b)
		benchmarkLoginCode(b, "postgres", func(name string) []string { return []string{"DSN=" + pg.dsn(b, name)} },
			func() string { return pg.plainDSN(b, "gateway_outbox_"+randomHex(3)) })
	})
}

// loginCodeEnv turns on Kratos's passwordless login by code; the identities
// of configs/kratos have no code credential, so the code goes to their
// password identifier (Kratos's fallback for such identities).
var loginCodeEnv = []string{
	"SELFSERVICE_METHODS_CODE_PASSWORDLESS_ENABLED=true",
	"SELFSERVICE_METHODS_CODE_CONFIG_MISSING_CREDENTIAL_FALLBACK_ENABLED=true",
	"LOG_LEVEL=info",
}

func benchmarkLoginCode(b *testing.B, db string, kratosDB func(name string) []string, outboxDSN func() string) {
	const recoveries, codes = 200, 30
	const pace = 100 * time.Millisecond
	for b.Loop() {
		for _, mode := range []string{"sync", "outbox"} {
			dsn := ""
			if mode == "outbox" {
				dsn = outboxDSN()
			}
			name := "kratos-logincode-" + db + "-" + mode
			s := startGatewayStack(b, name, dsn, slices.Concat(loginCodeEnv, kratosDB(strings.ReplaceAll(name, "-", "_")))...)
			idle := loginCodes(b, s, codes, pace, nil, false)
			loaded := loginCodes(b, s, codes, pace, func() *recoveryLoad { return startRecoveryLoad(b, s.kratos, recoveries) }, false)
			// The outbox's jobs of the runs through Kratos.
			var queues []string
			if dsn != "" {
				for _, q := range []string{"mail", "recovery"} {
					st := readRiverStats(b, dsn, q, time.Time{})
					queues = append(queues, fmt.Sprintf("outbox queue %s: %d jobs, wait for a worker p50 %.1f ms p95 %.1f ms, run p50 %.1f ms p95 %.1f ms, %d retried, %d not done",
						q, st.jobs, st.waitP50, st.waitP95, st.runP50, st.runP95, st.retried, st.notDone))
				}
			}
			var directIdle, directLoaded codeLatencies
			if mode == "outbox" {
				directIdle = loginCodes(b, s, codes, pace, nil, true)
				directLoaded = loginCodes(b, s, codes, pace, func() *recoveryLoad { return directRecoveryLoad(b, s, recoveries) }, true)
			}
			s.stop()

			ratio := loaded.p95 / idle.p95
			b.ReportMetric(idle.p50, mode+"-idle-p50-ms")
			b.ReportMetric(idle.p95, mode+"-idle-p95-ms")
			b.ReportMetric(loaded.p50, mode+"-loaded-p50-ms")
			b.ReportMetric(loaded.p95, mode+"-loaded-p95-ms")
			b.ReportMetric(ratio, mode+"-ratio")
			b.ReportMetric(loaded.kratosP95, mode+"-loaded-p95-kratos-queue-ms")
			b.ReportMetric(loaded.gatewayP95, mode+"-loaded-p95-gateway-ms")
			b.Logf("login code, Kratos on %s, %s gateway: idle p50 %.0f ms p95 %.0f ms (Kratos's queue p95 %.0f, gateway p95 %.0f); "+
				"200 recoveries queued: p50 %.0f ms p95 %.0f ms (Kratos's queue p95 %.0f, gateway p95 %.0f), ratio %.2f; "+
				"recovery mails still to come at the first code %d, at the last %d; all 200 recoveries mailed %.1f s after their first submission "+
				"(requests Kratos refused and were sent again: recoveries %d, login codes idle %d, loaded %d)",
				db, mode, idle.p50, idle.p95, idle.kratosP95, idle.gatewayP95, loaded.p50, loaded.p95, loaded.kratosP95, loaded.gatewayP95, ratio,
				loaded.load.pendingAtFirst, loaded.load.pendingAtLast, loaded.load.drained.Seconds(), loaded.load.refused, idle.refused, loaded.refused)
			b.Logf("  loaded: %s", loaded.pace)
			for _, q := range queues {
				b.Logf("  %s", q)
			}
			if mode == "outbox" {
				ratio := directLoaded.p95 / directIdle.p95
				b.ReportMetric(directIdle.p95, "outbox-direct-idle-p95-ms")
				b.ReportMetric(directLoaded.p95, "outbox-direct-loaded-p95-ms")
				b.ReportMetric(ratio, "outbox-direct-ratio")
				b.Logf("  Kratos left out (messages POSTed to /courier): idle p50 %.0f ms p95 %.0f ms; 200 recoveries handed over first (all queued): "+
					"p50 %.0f ms p95 %.0f ms, ratio %.2f; recovery mails still to come at the first code %d, at the last %d; all mailed %.1f s after the first was handed over",
					directIdle.p50, directIdle.p95, directLoaded.p50, directLoaded.p95, ratio,
					directLoaded.load.pendingAtFirst, directLoaded.load.pendingAtLast, directLoaded.load.drained.Seconds())
			}
		}
	}
}

// codeLatencies are one phase's login codes: submission to mail, and its
// two parts, in ms.
type codeLatencies struct {
	p50, p95              float64
	kratosP95, gatewayP95 float64
	refused               int // login requests Kratos refused, asked again
	load                  *recoveryLoad
	pace                  courierPace // of Kratos's courier, loaded
}

// loginCodes creates n identities, then (once load, when not nil, has
// submitted its recoveries) asks Kratos for a login code for each, one
// every pace, and times each until its mail is in Mailpit.
//
// direct leaves Kratos out: each login code is a login_code_valid message
// POSTed to the host's /courier, as Kratos's courier would, timed from the
// POST (so the wait in Kratos's queue is 0).
func loginCodes(b *testing.B, s *gatewayStack, n int, pace time.Duration, load func() *recoveryLoad, direct bool) codeLatencies {
	b.Helper()
	domain := "code-" + randomHex(4) + ".example.com"
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("c%d@%s", i, domain)
	}
	if !direct {
		createIdentities(b, s.kratos, emails, true)
	}
	var out codeLatencies
	if load != nil {
		out.load = load()
	}
	submitted := make([]time.Time, n)
	var refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	tick := time.NewTicker(pace)
	for i, email := range emails {
		wg.Go(func() {
			if direct {
				submitted[i] = time.Now()
				if status, err := postCourierB(s.listen, map[string]any{
					"recipient": email, "template_type": "login_code_valid", "message_type": "email",
					"subject": "Login to your account", "body": "Login to your account with the following code:\n\n" + randomHex(3) + "\n",
				}); err != nil || status != http.StatusOK {
					errs <- fmt.Errorf("login code message for %s: HTTP %d %v", email, status, err)
				}
				return
			}
			// A login Kratos refuses is asked for again, as a user would;
			// its time counts from the first try.
			for try := 1; ; try++ {
				var flow struct {
					ID string `json:"id"`
				}
				callB(b, "GET", s.kratos.public+"/self-service/login/api", nil, &flow)
				if try == 1 {
					submitted[i] = time.Now()
				}
				var res struct {
					State string `json:"state"`
				}
				// Kratos answers the API flow 400 with the flow, now in
				// state sent_email, asking for the code.
				status := callB(b, "POST", s.kratos.public+"/self-service/login?flow="+flow.ID,
					map[string]any{"method": "code", "identifier": email}, &res)
				if res.State == "sent_email" {
					return
				}
				refused.Add(1)
				if try == 5 {
					errs <- fmt.Errorf("login code for %s: HTTP %d, state %q, %d times", email, status, res.State, try)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
		if i < n-1 {
			<-tick.C
		}
	}
	tick.Stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	out.refused = int(refused.Load())
	if out.load != nil {
		out.load.pendingAtLast = out.load.pending(b)
	}
	arrived := waitArrivals(b, domain, emails)
	handed := map[string]time.Time{}
	for _, c := range s.proxy.since(submitted[0]) {
		if c.template == "login_code_valid" && c.status/100 == 2 {
			if _, seen := handed[c.recipient]; !seen {
				handed[c.recipient] = c.start
			}
		}
	}
	var total, inKratos, inGateway []float64
	for i, email := range emails {
		total = append(total, ms(arrived[email].Sub(submitted[i])))
		if direct {
			handed[email] = submitted[i]
		}
		if h, ok := handed[email]; ok {
			inKratos = append(inKratos, ms(h.Sub(submitted[i])))
			inGateway = append(inGateway, ms(arrived[email].Sub(h)))
		}
	}
	out.p50, out.p95 = percentile(total, 50), percentile(total, 95)
	if out.load != nil {
		out.pace = paceOf(s.proxy.since(out.load.start))
	}
	out.kratosP95, out.gatewayP95 = percentile(inKratos, 95), percentile(inGateway, 95)
	if out.load != nil {
		out.load.wait(b)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// createIdentities creates an identity for each address, with a bcrypt
// password or none, 8 at a time.
func createIdentities(b *testing.B, k kratosServer, emails []string, password bool) {
	b.Helper()
	parallel(b, emails, 8, func(email string) error {
		body := map[string]any{"schema_id": "default", "traits": map[string]any{"email": email}}
		if password {
			body["credentials"] = map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": importedHash}}}
		}
		if status := callB(b, "POST", k.admin+"/admin/identities", body, nil); status != http.StatusCreated {
			return fmt.Errorf("create %s: HTTP %d", email, status)
		}
		return nil
	})
}

// waitArrivals polls Mailpit until every address of emails (all at domain)
// has a mail, and returns when each arrived (Mailpit's receipt time).
func waitArrivals(b *testing.B, domain string, emails []string) map[string]time.Time {
	b.Helper()
	q := env.mailpitAPI + "/api/v1/search?limit=" + strconv.Itoa(len(emails)+10) + "&query=" + url.QueryEscape("to:"+domain)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var res struct {
			Messages []struct {
				To []struct {
					Address string `json:"Address"`
				} `json:"To"`
				Created time.Time `json:"Created"`
			} `json:"messages"`
		}
		callB(b, "GET", q, nil, &res)
		got := map[string]time.Time{}
		for _, m := range res.Messages {
			for _, to := range m.To {
				if t, ok := got[to.Address]; !ok || m.Created.Before(t) {
					got[to.Address] = m.Created
				}
			}
		}
		if len(got) >= len(emails) {
			return got
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d mails for %s arrived", len(got), len(emails), domain)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postCourierB POSTs a courier message to the host at listen, with the
// webhook key, as Kratos's courier does.
func postCourierB(listen string, msg map[string]any) (int, error) {
	status, _, err := send(http.MethodPost, "http://"+listen+"/courier", http.Header{"Authorization": {"Bearer " + env.apiKey}}, msg, nil)
	return status, err
}

// directRecoveryLoad creates n identities with a password in s's Kratos and
// POSTs a recovery_code_valid message for each to the host, 8 at a time, as
// Kratos's courier would hand them over: it returns once the host took all
// (with the outbox: all are queued).
func directRecoveryLoad(b *testing.B, s *gatewayStack, n int) *recoveryLoad {
	b.Helper()
	l := &recoveryLoad{n: n, domain: "load-" + randomHex(4) + ".example.com"}
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("r%d@%s", i, l.domain)
	}
	ids := map[string]string{}
	var mu sync.Mutex
	parallel(b, emails, 8, func(email string) error {
		var out struct {
			ID string `json:"id"`
		}
		body := map[string]any{"schema_id": "default", "traits": map[string]any{"email": email},
			"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": importedHash}}}}
		if status := callB(b, "POST", s.kratos.admin+"/admin/identities", body, &out); status != http.StatusCreated {
			return fmt.Errorf("create %s: HTTP %d", email, status)
		}
		mu.Lock()
		ids[email] = out.ID
		mu.Unlock()
		return nil
	})
	l.start = time.Now()
	parallel(b, emails, 8, func(email string) error {
		code := fmt.Sprintf("%06d", mathrand.IntN(1000000))
		status, err := postCourierB(s.listen, map[string]any{
			"recipient": email, "template_type": "recovery_code_valid", "message_type": "email",
			"subject": "Recover access to your account", "body": "Please recover access to your account by entering the following code:\n\n" + code + "\n",
			"template_data": map[string]any{"identity": map[string]any{"id": ids[email]}, "recovery_code": code},
		})
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("recovery message for %s: HTTP %d %v", email, status, err)
		}
		return nil
	})
	l.pendingAtFirst = l.pending(b)
	return l
}

// recoveryLoad is a burst of recoveries, submitted through Kratos or
// handed straight to the host.
type recoveryLoad struct {
	n                             int
	domain                        string
	start                         time.Time
	drained                       time.Duration
	pendingAtFirst, pendingAtLast int
	refused                       int
}

// startRecoveryLoad creates n identities with a password and submits their
// recoveries, 8 at a time; it returns once all are submitted (Kratos has
// queued their mails).
func startRecoveryLoad(b *testing.B, k kratosServer, n int) *recoveryLoad {
	b.Helper()
	l := &recoveryLoad{n: n, domain: "load-" + randomHex(4) + ".example.com"}
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("r%d@%s", i, l.domain)
	}
	createIdentities(b, k, emails, true)
	l.start = time.Now()
	l.refused = submitRecoveries(b, k, emails)
	l.pendingAtFirst = l.pending(b)
	return l
}

// submitRecoveries submits a recovery (code method) for each address, 8
// at a time, and returns how many submissions Kratos refused: a refused one
// is submitted again with a new flow, as a user would, up to 5 times (on
// sqlite, Kratos answers "database is locked" when its writers pile up).
func submitRecoveries(b *testing.B, k kratosServer, emails []string) int {
	b.Helper()
	var refused atomic.Int64
	parallel(b, emails, 8, func(email string) error {
		for try := 1; ; try++ {
			var flow struct {
				ID string `json:"id"`
			}
			callB(b, "GET", k.public+"/self-service/recovery/api", nil, &flow)
			status := callB(b, "POST", k.public+"/self-service/recovery?flow="+flow.ID, map[string]any{"method": "code", "email": email}, nil)
			if status == http.StatusOK {
				return nil
			}
			refused.Add(1)
			if try == 5 {
				return fmt.Errorf("recovery for %s: HTTP %d, %d times", email, status, try)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	return int(refused.Load())
}

// pending is the number of the load's recovery mails not yet in Mailpit.
func (l *recoveryLoad) pending(b *testing.B) int {
	var res struct {
		Total int `json:"messages_count"`
	}
	callB(b, "GET", env.mailpitAPI+"/api/v1/search?limit=1&query="+url.QueryEscape("to:"+l.domain), nil, &res)
	return l.n - res.Total
}

// wait returns once every recovery mail of the load is in Mailpit.
func (l *recoveryLoad) wait(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for l.pending(b) > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d recovery mails for %s did not arrive", l.pending(b), l.n, l.domain)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.drained = time.Since(l.start)
}

// BenchmarkCourierAnswer times POST /courier as Kratos's courier sends it,
// one pass-through message (verification_code_valid) at a time, from this
// process: with the synchronous gateway (answered once Mailpit accepted the
// mail) and with the outbox, answered once the message is stored: "outbox"
// on a cluster set up as for production (startPostgres: fsync and
// synchronous_commit on, so each answer waits for a WAL flush), and
// "outbox-nofsync" on a pgtest database (both off). Back to back, as
// Kratos's courier sends a batch, each answer shares the machine with the
// deliveries of the messages before it; "outbox-paced" (as "outbox", one
// message every 20 ms) shows the answer without that. Run with -benchtime
// 500x: b.N messages per mode, p50 and p95.
func BenchmarkCourierAnswer(b *testing.B) {
	for _, mode := range []string{"sync", "outbox", "outbox-nofsync", "outbox-paced"} {
		b.Run(mode, func(b *testing.B) {
			dsn := ""
			var pace <-chan time.Time
			switch mode {
			case "outbox", "outbox-paced":
				dsn = startPostgres(b).plainDSN(b, "gateway_outbox")
				if mode == "outbox-paced" {
					tick := time.NewTicker(20 * time.Millisecond)
					defer tick.Stop()
					pace = tick.C
				}
			case "outbox-nofsync":
				dsn = pgtest.NewDatabase(b)
			}
			listen := fmt.Sprintf("127.0.0.1:%d", freePort())
			cfg := gatewayConfig(hostOptions{enabled: true, listen: listen})
			if dsn != "" {
				if u, err := url.Parse(dsn); err == nil {
					if pass, ok := u.User.Password(); ok {
						observed.secret(pass)
					}
				}
				cfg += outboxQueueConfig(dsn)
			}
			_, stop := runHostReady(b, writeConfigTB(b, cfg), "http://"+listen+"/health/ready", http.DefaultClient)
			b.Cleanup(stop)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			domain := "answer-" + randomHex(4) + ".example.com"
			var took []float64
			var emails []string
			i := 0
			for b.Loop() {
				email := fmt.Sprintf("a%d@%s", i, domain)
				i++
				emails = append(emails, email)
				raw, _ := json.Marshal(map[string]any{
					"recipient": email, "template_type": "verification_code_valid", "message_type": "email",
					"subject": "Please verify your email address", "body": "Your verification code is " + randomHex(3) + "\n",
				})
				req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/courier", bytes.NewReader(raw))
				req.Header.Set("Authorization", "Bearer "+env.apiKey)
				req.Header.Set("Content-Type", "application/json")
				if pace != nil {
					<-pace
				}
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				took = append(took, ms(time.Since(start)))
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("courier: HTTP %d", resp.StatusCode)
				}
			}
			b.StopTimer()
			p50, p95 := percentile(took, 50), percentile(took, 95)
			b.ReportMetric(p50, "p50-ms")
			b.ReportMetric(p95, "p95-ms")
			// Every message is delivered before the next mode starts.
			waitArrivals(b, domain, emails)
			b.Logf("/courier answer, %s gateway, %d pass-through messages one at a time: p50 %.2f ms, p95 %.2f ms", mode, len(took), p50, p95)
		})
	}
}
