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
)

// BenchmarkRecoveryBurst submits 200 recoveries at once through real Kratos
// and measures recoveries/s until the last mail is in Mailpit: with the
// gateway (Kratos's HTTP courier) and with Kratos's own SMTP courier to the
// same Mailpit, same Kratos config and pull_wait, in one run. For the
// gateway it also reports, from the host's per-message log, the median time
// spent in Kratos admin calls, in the plugin (SMTP included) and in the
// host's own work.
//
// It runs on sqlite, as the local stack does, and on PostgreSQL, which is
// what configs/kratos recommends for production (a throwaway cluster on
// loopback; scripts/deps.sh postgres installs the server).
//
// Both paths get a Kratos of their own at the log level configs/kratos
// ships (info; the test stack's shared Kratos logs at debug). With
// BENCH_PROFILE_DIR set, both run with Kratos's PROFILING=cpu (or
// BENCH_PROFILE: block, mutex, mem) and their profiles are copied there as
// <db>-gateway.pprof and <db>-native.pprof.
func BenchmarkRecoveryBurst(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchmarkBurst(b, "sqlite", nil, nil)
	})
	b.Run("postgres", func(b *testing.B) {
		pg := startPostgres(b)
		benchmarkBurst(b, "postgres", []string{"DSN=" + pg.dsn(b, "kratos_gateway")}, []string{"DSN=" + pg.dsn(b, "kratos_native")})
	})
}

func benchmarkBurst(b *testing.B, db string, gatewayEnv, nativeEnv []string) {
	const n = 200
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

	for b.Loop() {
		// Identities with a password (bcrypt), then identities without one
		// (users who sign in by code, OIDC or passkey): for those the
		// gateway has nothing to seal and must still not make Kratos hash.
		for _, kind := range []struct {
			prefix   string
			password bool
		}{{"", true}, {"nopw-", false}} {
			logStart := len(h.String())
			gateway := burst(b, gatewayKratos, n, kind.password)
			kratosSMTP := burst(b, native, n, kind.password)
			b.ReportMetric(gateway, kind.prefix+"gateway-recoveries/s")
			b.ReportMetric(kratosSMTP, kind.prefix+"kratos-smtp-recoveries/s")
			b.ReportMetric(gateway/kratosSMTP, kind.prefix+"ratio")
			k, p, own := medianSplit(b, h.String()[logStart:])
			b.ReportMetric(k, kind.prefix+"p50-kratos-ms")
			b.ReportMetric(p, kind.prefix+"p50-plugin-ms")
			b.ReportMetric(own, kind.prefix+"p50-host-own-ms")
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

// burst creates n identities (with a bcrypt password, or with none),
// submits their recoveries 8 at a time, and returns recoveries/s from the
// first submission to the last mail.
func burst(b *testing.B, k kratosServer, n int, password bool) float64 {
	b.Helper()
	domain := "burst-" + randomHex(4) + ".example.com"
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("u%d@%s", i, domain)
	}
	parallel(b, emails, 8, func(email string) error {
		body := map[string]any{"schema_id": "default", "traits": map[string]any{"email": email}}
		if password {
			body["credentials"] = map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": importedHash}}}
		}
		if status := callB(b, "POST", k.admin+"/admin/identities", body, nil); status != 201 {
			return fmt.Errorf("create %s: HTTP %d", email, status)
		}
		return nil
	})
	start := time.Now()
	parallel(b, emails, 8, func(email string) error {
		var flow struct {
			ID string `json:"id"`
		}
		callB(b, "GET", k.public+"/self-service/recovery/api", nil, &flow)
		if status := callB(b, "POST", k.public+"/self-service/recovery?flow="+flow.ID, map[string]any{"method": "code", "email": email}, nil); status != 200 {
			return fmt.Errorf("recovery for %s: HTTP %d", email, status)
		}
		return nil
	})
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
	return float64(n) / time.Since(start).Seconds()
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
