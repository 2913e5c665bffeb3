package integration

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
)

// BenchmarkRecoveryBurst submits 200 recoveries at once through real Kratos
// and measures recoveries/s until the last mail is in Mailpit: with the
// gateway (Kratos's HTTP courier) and with Kratos's own SMTP courier to the
// same Mailpit, same Kratos config and pull_wait, in one run. For the
// gateway it also reports, from the host's per-message log, the median time
// spent in Kratos admin calls, in the plugin (SMTP included) and in the
// host's own work. In the same run, a third Kratos drives a gateway with the
// durable outbox (queue.postgres_dsn: a pgtest database beside sqlite, a
// database of its own in Kratos's cluster beside PostgreSQL): its
// recoveries/s, the ratio to Kratos's SMTP courier, /courier's answer time
// as Kratos's courier waits for it (a timingProxy between them), and from
// river_job how long the jobs waited for a worker.
//
// It runs on sqlite, as the local stack does, and on PostgreSQL, which is
// what configs/kratos recommends for production (a throwaway cluster on
// loopback; scripts/deps.sh postgres installs the server).
//
// Each path gets a Kratos of its own at the log level configs/kratos
// ships (info; the test stack's shared Kratos logs at debug). With
// BENCH_PROFILE_DIR set, all run with Kratos's PROFILING=cpu (or
// BENCH_PROFILE: block, mutex, mem) and their profiles are copied there as
// <db>-gateway.pprof, <db>-native.pprof and <db>-outbox.pprof.
func BenchmarkRecoveryBurst(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchmarkBurst(b, "sqlite", nil, nil, nil, pgtest.NewDatabase(b))
	})
	b.Run("postgres", func(b *testing.B) {
		pg := startPostgres(b)
		benchmarkBurst(b, "postgres", []string{"DSN=" + pg.dsn(b, "kratos_gateway")}, []string{"DSN=" + pg.dsn(b, "kratos_native")},
			[]string{"DSN=" + pg.dsn(b, "kratos_outbox")}, pg.plainDSN(b, "gateway_outbox"))
	})
}

// benchmarkBurst runs the burst through the gateway, through Kratos's SMTP
// courier and through the gateway with the outbox on outboxDSN (a Kratos
// each, started with gatewayEnv, nativeEnv, outboxEnv). The outbox's
// Kratos calls its gateway through a timingProxy, which times /courier as
// Kratos's courier waits for it.
func benchmarkBurst(b *testing.B, db string, gatewayEnv, nativeEnv, outboxEnv []string, outboxDSN string) {
	const n = 200
	kratosPGPort := 0 // Kratos's PostgreSQL, for the CPU meter
	for _, e := range gatewayEnv {
		if dsn, ok := strings.CutPrefix(e, "DSN="); ok {
			kratosPGPort = portOf(dsn)
		}
	}
	profileDir := os.Getenv("BENCH_PROFILE_DIR")
	// BENCH_KRATOS_ENV (KEY=VALUE ...) goes to both, e.g. to compare
	// COURIER_WORKER_PULL_WAIT values.
	kratosEnv := append([]string{"LOG_LEVEL=info"}, strings.Fields(os.Getenv("BENCH_KRATOS_ENV"))...)
	if profileDir != "" {
		kind := cmp.Or(os.Getenv("BENCH_PROFILE"), "cpu")
		kratosEnv = append(kratosEnv, "PROFILING="+kind)
	}
	gwName, nativeName := "kratos-burst-"+db+"-gateway", "kratos-burst-"+db+"-native"
	gatewayKratos, stopGatewayKratos, err := env.startKratos(gwName, "bcrypt", slices.Concat(kratosEnv, gatewayEnv)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stopGatewayKratos(); saveKratosProfile(b, gwName, profileDir) })
	native, stopNative, err := env.startKratos(nativeName, "bcrypt", slices.Concat(kratosEnv, nativeEnv, nativeSMTPEnv(env.smtpPort))...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stopNative(); saveKratosProfile(b, nativeName, profileDir) })
	h, stop := runHostWith(b, writeConfigTB(b, gatewayConfig(hostOptions{enabled: true, kratos: &gatewayKratos})))
	b.Cleanup(stop)
	outboxName := "kratos-burst-" + db + "-outbox"
	outbox := startGatewayStack(b, outboxName, outboxDSN, slices.Concat(kratosEnv, outboxEnv)...)
	b.Cleanup(func() { outbox.stop(); saveKratosProfile(b, outboxName, profileDir) })

	for b.Loop() {
		// Identities with a password (bcrypt), then identities without one
		// (users who sign in by code, OIDC or passkey): for those the
		// gateway has nothing to seal and must still not make Kratos hash.
		for _, kind := range []struct {
			prefix   string
			password bool
		}{{"", true}, {"nopw-", false}} {
			logStart := len(h.String())
			gwCPU := newCPUMeter(map[string]int{"kratos": portOf(gatewayKratos.admin), "gateway": portOf(env.hostAddr), "postgres": kratosPGPort, "mailpit": env.smtpPort})
			natCPU := newCPUMeter(map[string]int{"kratos": portOf(native.admin), "postgres": kratosPGPort, "mailpit": env.smtpPort})
			obCPU := newCPUMeter(map[string]int{"kratos": portOf(outbox.kratos.admin), "gateway": portOf(outbox.listen),
				"postgres": portOf(outboxDSN), "mailpit": env.smtpPort})
			gw := burst(b, gatewayKratos, n, kind.password, gwCPU)
			nat := burst(b, native, n, kind.password, natCPU)
			gateway, kratosSMTP := gw.rate, nat.rate
			b.ReportMetric(gateway, kind.prefix+"gateway-recoveries/s")
			b.ReportMetric(kratosSMTP, kind.prefix+"kratos-smtp-recoveries/s")
			b.ReportMetric(gateway/kratosSMTP, kind.prefix+"ratio")
			k, p, own := medianSplit(b, h.String()[logStart:])
			b.ReportMetric(k, kind.prefix+"p50-kratos-ms")
			b.ReportMetric(p, kind.prefix+"p50-plugin-ms")
			b.ReportMetric(own, kind.prefix+"p50-host-own-ms")

			logStart = len(outbox.host.String())
			ob := burst(b, outbox.kratos, n, kind.password, obCPU)
			withOutbox, start := ob.rate, ob.start
			courierDone := time.Duration(0)
			calls := outbox.proxy.since(start)
			for _, c := range calls {
				courierDone = max(courierDone, c.end.Sub(start))
			}
			a50, a95, failed := answerTimes(calls)
			k, p, own = medianSplit(b, outbox.host.String()[logStart:])
			st := readRiverStats(b, outboxDSN, "recovery", start)
			b.ReportMetric(withOutbox, kind.prefix+"outbox-recoveries/s")
			b.ReportMetric(withOutbox/kratosSMTP, kind.prefix+"outbox-ratio")
			b.ReportMetric(a50, kind.prefix+"outbox-courier-p50-ms")
			b.ReportMetric(a95, kind.prefix+"outbox-courier-p95-ms")
			b.ReportMetric(k, kind.prefix+"outbox-p50-kratos-ms")
			b.ReportMetric(st.waitP50, kind.prefix+"outbox-job-wait-p50-ms")
			b.Logf("burst of %d (%s), Kratos on %s: gateway %.1f/s, Kratos's SMTP courier %.1f/s, gateway with the outbox %.1f/s (ratio %.2f); "+
				"outbox: Kratos's courier handed the last message over %.1f s after the first submission (%d /courier calls, answered p50 %.2f ms p95 %.2f ms, %d not 2xx), "+
				"the last mail %.1f s after it; per job: waited for a worker p50 %.0f ms p95 %.0f ms, ran p50 %.0f ms p95 %.0f ms "+
				"(Kratos admin calls p50 %.1f ms, plugin %.1f ms, host %.2f ms), %d of %d jobs retried; "+
				"recovery submissions Kratos refused (submitted again): gateway %d, SMTP courier %d, outbox %d",
				n, cmp.Or(strings.TrimSuffix(kind.prefix, "-"), "password"), db, gateway, kratosSMTP, withOutbox, withOutbox/kratosSMTP,
				courierDone.Seconds(), len(calls), a50, a95, failed, float64(n)/withOutbox,
				st.waitP50, st.waitP95, st.runP50, st.runP95, k, p, own, st.retried, st.jobs, gw.refused, nat.refused, ob.refused)
			// go test keeps 10 lines of a benchmark's log: two per kind.
			b.Logf("  outbox: %s. %s", paceOf(calls), strings.Join([]string{"gateway: " + gwCPU.summary(n, "recovery"),
				"Kratos's SMTP courier: " + natCPU.summary(n, "recovery"), "gateway with the outbox: " + obCPU.summary(n, "recovery")}, "; "))
			b.ReportMetric(gwCPU.perUnit(n), kind.prefix+"gateway-cpu-ms")
			b.ReportMetric(natCPU.perUnit(n), kind.prefix+"kratos-smtp-cpu-ms")
			b.ReportMetric(obCPU.perUnit(n), kind.prefix+"outbox-cpu-ms")
		}
	}
}

// saveKratosProfile copies the profile a Kratos started with PROFILING
// wrote when it stopped; its log names the file.
func saveKratosProfile(b *testing.B, name, dir string) {
	if dir == "" {
		return
	}
	log, err := os.ReadFile(filepath.Join(env.logDir, name+".log"))
	if err != nil {
		b.Errorf("read %s log: %v", name, err)
		return
	}
	m := regexp.MustCompile(`profiling disabled, (\S+\.pprof)`).FindSubmatch(log)
	if m == nil {
		b.Errorf("%s wrote no profile", name)
		return
	}
	prof, err := os.ReadFile(string(m[1]))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, strings.TrimPrefix(name, "kratos-burst-")+".pprof"), prof, 0o644)
	}
	if err != nil {
		b.Errorf("save %s profile: %v", name, err)
	}
}

// burstResult is one burst: recoveries/s, when the first submission
// started, and how many submissions Kratos refused (each is submitted
// again, as a user would, up to 5 times).
type burstResult struct {
	rate    float64
	start   time.Time
	refused int
}

// burst creates n identities (with a bcrypt password, or with none),
// submits their recoveries 8 at a time, and returns recoveries/s from the
// first submission to the last mail, when that submission started and how
// many submissions Kratos refused; meter, if not nil, measures the CPU from
// the first submission to the last mail.
func burst(b *testing.B, k kratosServer, n int, password bool, meter *cpuMeter) burstResult {
	b.Helper()
	domain := "burst-" + randomHex(4) + ".example.com"
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("u%d@%s", i, domain)
	}
	createIdentities(b, k, emails, password)
	if meter != nil {
		meter.begin()
	}
	start := time.Now()
	refused := submitRecoveries(b, k, emails)
	q := env.mailpitAPI + "/api/v1/search?limit=1&query=" + url.QueryEscape("to:"+domain)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var res struct {
			Total int `json:"messages_count"`
		}
		callB(b, "GET", q, nil, &res)
		if res.Total >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d mails for %s arrived", res.Total, n, domain)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	if meter != nil {
		meter.end()
	}
	return burstResult{rate: float64(n) / took.Seconds(), start: start, refused: refused}
}

// medianSplit reads the host's "courier message handled" lines and returns
// the medians, in ms, of the Kratos, plugin and own parts.
func medianSplit(b *testing.B, log string) (kratos, plugin, own float64) {
	b.Helper()
	var ks, ps, os []float64
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"msg":"courier message handled"`) {
			continue
		}
		var l struct {
			Kratos int64 `json:"kratos_us"`
			Plugin int64 `json:"plugin_us"`
			Own    int64 `json:"own_us"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			b.Fatalf("log line %q: %v", line, err)
		}
		ks, ps, os = append(ks, float64(l.Kratos)/1000), append(ps, float64(l.Plugin)/1000), append(os, float64(l.Own)/1000)
	}
	if len(ks) == 0 {
		b.Fatal("the host logged no handled messages")
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	return med(ks), med(ps), med(os)
}
