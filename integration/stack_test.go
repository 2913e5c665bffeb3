package integration

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
)

// Versions built by scripts/deps.sh into .cache/.
const (
	kratosV1       = "v1.3.1"
	kratosV26      = "v26.2.0"
	mailpitVersion = "v1.27.11"
	// kratosRecommended is the Kratos docker-compose.yml and the local
	// stack run unless told otherwise.
	kratosRecommended = kratosV26
)

// kratosVersion is the Kratos the suite runs against: KRATOS_VERSION
// (v1.3.1 or v26.2.0), v1.3.1 when unset. scripts/test.sh runs the suite
// once per version.
var kratosVersion = cmp.Or(os.Getenv("KRATOS_VERSION"), kratosV1)

// kratosIsV26 says the suite runs Kratos v26.2.0, for the tests that assert
// a behaviour that differs between the versions.
func kratosIsV26() bool { return kratosVersion == kratosV26 }

// stack is the processes every test shares: Kratos and Mailpit run for the
// whole package; each test starts its own gateway host (startHost) on the
// port Kratos's courier calls, so tests run one after another.
type stack struct {
	root, dir, logDir string

	gatewayBin, pluginBin string

	kratosBin                 string
	kratosPublic, kratosAdmin string
	hostAddr                  string
	apiKey                    string

	mailpitAPI string
	smtpPort   int
	smtpUser   string
	smtpPass   string
	caFile     string
	cipher     string
}

var env *stack

func TestMain(m *testing.M) {
	s, cleanup, err := startStack()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		cleanup()
		os.Exit(1)
	}
	env = s
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "integration: Kratos %s; logs of Kratos, Mailpit and the gateway are in %s\n", kratosVersion, s.logDir)
	}
	cleanup()
	os.Exit(code)
}

func startStack() (*stack, func(), error) {
	var stops []func()
	cleanup := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if kratosVersion != kratosV1 && kratosVersion != kratosV26 {
		return nil, cleanup, fmt.Errorf("KRATOS_VERSION=%s: the suite runs %s or %s (scripts/deps.sh builds both)", kratosVersion, kratosV1, kratosV26)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, cleanup, err
	}
	dir, err := os.MkdirTemp("", "kratos-email-gateway-it-")
	if err != nil {
		return nil, cleanup, err
	}
	stops = append(stops, func() { _ = os.RemoveAll(dir) })
	s := &stack{
		root:     root,
		dir:      dir,
		logDir:   filepath.Join(root, "integration", ".artifacts"),
		apiKey:   "it-webhook-key-" + randomHex(12),
		smtpUser: "gateway@example.com",
		smtpPass: "it-smtp-code-" + randomHex(8),
		cipher:   "it-cipher-" + randomHex(16),
	}
	// INTEGRATION_ARTIFACTS keeps the logs of one run apart from another's
	// (each run empties its folder first).
	if d := os.Getenv("INTEGRATION_ARTIFACTS"); d != "" {
		s.logDir = d
	}
	_ = os.RemoveAll(s.logDir)
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return nil, cleanup, err
	}

	kratosBin := filepath.Join(root, ".cache", "kratos-"+kratosVersion)
	mailpitBin := filepath.Join(root, ".cache", "mailpit-"+mailpitVersion, "mailpit")
	if !isExecutable(kratosBin) || !isExecutable(mailpitBin) {
		cmd := exec.Command(filepath.Join(root, "scripts", "deps.sh"), "kratos-"+kratosVersion, "mailpit")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, cleanup, fmt.Errorf("build Kratos and Mailpit with scripts/deps.sh: %w", err)
		}
	}

	s.gatewayBin = filepath.Join(dir, "bin", "gateway")
	s.pluginBin = filepath.Join(dir, "bin", "gateway-email-plugin")
	for bin, pkg := range map[string]string{s.gatewayBin: "./host/cmd/gateway", s.pluginBin: "./plugin/cmd/gateway-email-plugin"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, cleanup, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}

	certFile, keyFile, caFile, err := writeTLS(dir)
	if err != nil {
		return nil, cleanup, err
	}
	s.caFile = caFile

	// Mailpit: implicit TLS with a private CA and SMTP AUTH, the shape of
	// the gateway's default `security: tls`. Pruning is off (--max 0):
	// Mailpit keeps only its newest 500 messages by default, and its
	// minutely prune would delete mail a test is still counting (the load
	// test sends 1,000).
	s.smtpPort = freePort()
	httpPort := freePort()
	s.mailpitAPI = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	authFile := filepath.Join(dir, "smtp-auth")
	if err := os.WriteFile(authFile, []byte(s.smtpUser+":"+s.smtpPass+"\n"), 0o600); err != nil {
		return nil, cleanup, err
	}
	stop, err := s.start("mailpit", mailpitBin, dir, nil,
		"--smtp", fmt.Sprintf("127.0.0.1:%d", s.smtpPort),
		"--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile, "--smtp-require-tls",
		"--smtp-auth-file", authFile,
		"--database", filepath.Join(dir, "mailpit.db"), "--max", "0",
	)
	if err != nil {
		return nil, cleanup, err
	}
	stops = append(stops, stop)

	// Kratos with the committed configs/kratos, on free ports.
	s.hostAddr = fmt.Sprintf("127.0.0.1:%d", freePort())
	s.kratosBin = kratosBin
	k, stop, err := s.startKratos("kratos", "bcrypt")
	if err != nil {
		return nil, cleanup, err
	}
	stops = append(stops, stop)
	s.kratosPublic, s.kratosAdmin = k.public, k.admin

	if err := waitHTTP(s.mailpitAPI+"/api/v1/info", 30*time.Second); err != nil {
		return nil, cleanup, fmt.Errorf("mailpit not ready: %w", err)
	}
	return s, cleanup, nil
}

// kratosServer is one running Kratos.
type kratosServer struct {
	public, admin string
}

// startKratos runs a Kratos of its own (database, ports) with the committed
// configs/kratos and the given hasher (bcrypt or argon2), wired to the
// gateway's address, and returns a function that stops it.
func (s *stack) startKratos(name, hasher string, extraEnv ...string) (kratosServer, func(), error) {
	return s.startKratosFor(name, hasher, "http://"+s.hostAddr, extraEnv...)
}

// startKratosFor is startKratos wired to a gateway at gatewayURL (e.g.
// https://127.0.0.1:port for a gateway serving TLS).
func (s *stack) startKratosFor(name, hasher, gatewayURL string, extraEnv ...string) (kratosServer, func(), error) {
	return s.startKratosEdited(name, hasher, gatewayURL, nil, extraEnv...)
}

// startKratosEdited is startKratosFor with kratos.yml passed through edit
// first (nil: as committed), for a Kratos wired the wrong way on purpose.
func (s *stack) startKratosEdited(name, hasher, gatewayURL string, edit func(kratosYML string) string, extraEnv ...string) (kratosServer, func(), error) {
	dir := filepath.Join(s.dir, name)
	publicPort, adminPort := freePort(), freePort()
	k := kratosServer{public: fmt.Sprintf("http://127.0.0.1:%d", publicPort), admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
	kratosEnv := []string{
		// BENCH_SQLITE_JOURNAL lets the benchmarks compare journal modes.
		"DSN=sqlite://" + filepath.Join(dir, "kratos.sqlite") + "?_fk=true&mode=rwc&_journal_mode=" + cmp.Or(os.Getenv("BENCH_SQLITE_JOURNAL"), "WAL"),
		fmt.Sprintf("SERVE_PUBLIC_PORT=%d", publicPort),
		"SERVE_PUBLIC_BASE_URL=" + k.public + "/",
		fmt.Sprintf("SERVE_ADMIN_PORT=%d", adminPort),
		"SERVE_ADMIN_BASE_URL=" + k.admin + "/",
		"HASHERS_ALGORITHM=" + hasher,
		"LOG_LEVEL=debug",
		// These machines reach no internet: Kratos's Have I Been Pwned
		// client retries for about 10 s before it gives up, in every
		// settings flow. Production keeps the check (configs/kratos).
		"SELFSERVICE_METHODS_PASSWORD_CONFIG_HAVEIBEENPWNED_ENABLED=false",
	}
	kratosEnv = append(kratosEnv, extraEnv...)
	kratosDir, err := renderKratosConfig(filepath.Join(s.root, "configs", "kratos"), dir, gatewayURL, s.apiKey)
	if err != nil {
		return k, nil, err
	}
	if edit != nil {
		yml := filepath.Join(kratosDir, "kratos.yml")
		raw, err := os.ReadFile(yml)
		if err != nil {
			return k, nil, err
		}
		if err := os.WriteFile(yml, []byte(edit(string(raw))), 0o600); err != nil {
			return k, nil, err
		}
	}
	migrate := exec.Command(s.kratosBin, "migrate", "sql", "-e", "--yes", "-c", "kratos.yml")
	migrate.Dir, migrate.Env = kratosDir, append(os.Environ(), kratosEnv...)
	if out, err := migrate.CombinedOutput(); err != nil {
		return k, nil, fmt.Errorf("kratos migrate: %v\n%s", err, tail(out))
	}
	stop, err := s.start(name, s.kratosBin, kratosDir, kratosEnv, "serve", "-c", "kratos.yml", "--dev", "--watch-courier")
	if err != nil {
		return k, nil, err
	}
	if err := waitHTTP(k.admin+"/admin/health/ready", 60*time.Second); err != nil {
		stop()
		return k, nil, fmt.Errorf("%s not ready: %w", name, err)
	}
	return k, stop, nil
}

// ownKratos starts a Kratos of the test's own, wired to the gateway's
// address (kratos.yml passed through edit when not nil), stops it when the
// test ends, and points the helpers at it.
func ownKratos(t *testing.T, name string, edit func(kratosYML string) string, extraEnv ...string) kratosServer {
	t.Helper()
	k, stop, err := env.startKratosEdited(name, "bcrypt", "http://"+env.hostAddr, edit, extraEnv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	useKratos(t, k)
	return k
}

// nativeSMTPEnv switches a Kratos started by startKratos to its own SMTP
// courier, sending as env.smtpUser over implicit TLS to 127.0.0.1:port.
func nativeSMTPEnv(port int) []string {
	return []string{
		"COURIER_DELIVERY_STRATEGY=smtp",
		fmt.Sprintf("COURIER_SMTP_CONNECTION_URI=smtps://%s:%s@127.0.0.1:%d/?skip_ssl_verify=true",
			url.QueryEscape(env.smtpUser), url.QueryEscape(env.smtpPass), port),
		"COURIER_SMTP_FROM_ADDRESS=no-reply@example.com",
	}
}

// renderKratosConfig copies configs/kratos to dst with the gateway's address
// and API key filled in, as an operator's deployment does.
func renderKratosConfig(src, dst, gatewayURL, apiKey string) (string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	r := strings.NewReplacer("http://127.0.0.1:8080", gatewayURL, "change-me-to-the-gateway-webhook-api-key", apiKey,
		// The version key only decides whether Kratos warns at start.
		"\nversion: "+kratosV26+"\n", "\nversion: "+kratosVersion+"\n")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), []byte(r.Replace(string(raw))), 0o600); err != nil {
			return "", err
		}
	}
	return dst, nil
}

// start runs a long-lived process with its output in logDir/name.log and
// returns a function that stops it.
func (s *stack) start(name, bin, dir string, extraEnv []string, args ...string) (func(), error) {
	logFile, err := os.Create(filepath.Join(s.logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
	}, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&0o111 != 0
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHTTP(url string, limit time.Duration) error {
	return waitHTTPWith(http.DefaultClient, url, limit)
}

// waitHTTPWith is waitHTTP with a client of the caller's, e.g. one trusting
// a private CA.
func waitHTTPWith(c *http.Client, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// writeTLS makes a throwaway CA and a server certificate for 127.0.0.1, so
// the gateway verifies Mailpit's certificate through smtp.ca_file as it
// would a private CA in production.
func writeTLS(dir string) (certFile, keyFile, caFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kratos-email-gateway integration CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	certFile, keyFile, caFile = filepath.Join(dir, "smtp.crt"), filepath.Join(dir, "smtp.key"), filepath.Join(dir, "ca.crt")
	for path, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: leafDER},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return "", "", "", err
		}
	}
	return certFile, keyFile, caFile, nil
}

// hostOptions change the gateway config of one test.
type hostOptions struct {
	enabled bool
	// smtpPort overrides Mailpit's port, e.g. with a closed one or another
	// server's; caFile the CA that issued that server's certificate.
	smtpPort int
	caFile   string
	// ttl overrides password.ttl (default 1h).
	ttl string
	// cooldown overrides password.cooldown (default 60s).
	cooldown string
	// replaceAtOnce sets password.keep_current_until_used: false.
	replaceAtOnce bool
	// kratos overrides the shared Kratos (e.g. one with another hasher).
	kratos *kratosServer
	// demoUI serves the demo UI on 127.0.0.1:4455, where Kratos's ui_url
	// values send the browser.
	demoUI bool
	// listen overrides listen (default env.hostAddr, where the shared
	// Kratos calls).
	listen string
}

// startHost runs `gateway serve` with a config written for this stack and
// stops it when the test ends.
func startHost(t *testing.T, o hostOptions) *hostProc {
	t.Helper()
	h, stop := runHost(t, o)
	t.Cleanup(stop)
	return h
}

// hostProc is a running gateway host: its log and its config file.
type hostProc struct {
	*testlog.Buffer
	configPath string
	pid        int
}

// gatewayConfig renders the gateway.yaml of a test.
func gatewayConfig(o hostOptions) string {
	k := kratosServer{public: env.kratosPublic, admin: env.kratosAdmin}
	if o.kratos != nil {
		k = *o.kratos
	}
	cfg := fmt.Sprintf(`enabled: %t
listen: %s
webhook:
  api_key: %q
kratos:
  admin_url: %s
  public_url: %s
  login_ui_url: http://127.0.0.1:4455/login
  settings_ui_url: http://127.0.0.1:4455/settings
plugin:
  path: %s
password:
  length: 16
  ttl: 1h
  cooldown: 60s
  keep_current_until_used: %t
  revoke_sessions: true
smtp:
  host: 127.0.0.1
  port: %d
  email_address: no-reply@example.com
  sender_name: Example Accounts
  username: %s
  security: tls
  ca_file: %s
`, o.enabled, cmp.Or(o.listen, env.hostAddr), env.apiKey, k.admin, k.public, env.pluginBin, !o.replaceAtOnce, env.smtpPort, env.smtpUser, env.caFile)
	if o.cooldown != "" {
		cfg = strings.Replace(cfg, "cooldown: 60s", "cooldown: "+o.cooldown, 1)
	}
	if o.ttl != "" {
		cfg = strings.Replace(cfg, "ttl: 1h", "ttl: "+o.ttl, 1)
	}
	if o.smtpPort != 0 {
		cfg = strings.Replace(cfg, fmt.Sprintf("port: %d", env.smtpPort), fmt.Sprintf("port: %d", o.smtpPort), 1)
	}
	if o.caFile != "" {
		cfg = strings.Replace(cfg, "ca_file: "+env.caFile, "ca_file: "+o.caFile, 1)
	}
	if o.demoUI {
		cfg += fmt.Sprintf("demo_ui:\n  listen: 127.0.0.1:4455\n  mailpit_url: %s\n", env.mailpitAPI)
	}
	return cfg
}

// runHost is startHost for tests that stop the host themselves (stop is
// safe to call more than once).
func runHost(t *testing.T, o hostOptions) (*hostProc, func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(gatewayConfig(o)), 0o600); err != nil {
		t.Fatal(err)
	}
	return runHostWith(t, path)
}

// runHostWith starts `gateway serve` on a config file the test wrote.
func runHostWith(t testing.TB, path string) (*hostProc, func()) {
	t.Helper()
	return runHostReady(t, path, "http://"+env.hostAddr+"/health/ready", http.DefaultClient)
}

// runHostReady is runHostWith for a host whose readiness is asked at
// readyURL with c (another listen address, HTTPS with a private CA).
func runHostReady(t testing.TB, path, readyURL string, c *http.Client) (*hostProc, func()) {
	t.Helper()
	var logs testlog.Buffer
	// Appending keeps the logs of every host a test started.
	logFile, err := os.OpenFile(filepath.Join(env.logDir, "gateway-"+strings.ReplaceAll(t.Name(), "/", "_")+".log"),
		os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	withQueueMode(t, path)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, env.gatewayBin, "serve", "--config", path)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	// The authorization code comes from the environment, as the README advises.
	cmd.Env = append(os.Environ(), "GATEWAY_SMTP__AUTHORIZATION_CODE="+env.smtpPass, "GATEWAY_SECRETS__CIPHER="+env.cipher)
	out := &teeWriter{a: logFile, b: &logs}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			_ = cmd.Wait()
			logFile.Close()
		})
	}
	if err := waitHTTPWith(c, readyURL, 30*time.Second); err != nil {
		stop()
		t.Fatalf("gateway not ready: %v\nlog:\n%s", err, logs.String())
	}
	// The queue mode's run must really go through the outbox. The host
	// logs how it serves just after it started answering.
	if strings.Contains(cfg, "\nqueue:") {
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), `"msg":"gateway serving"`) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), `"outbox":true`) {
			stop()
			t.Fatalf("a host configured with queue.postgres_dsn did not start its outbox:\n%s", logs.String())
		}
	}
	// Until its first wiring check ended, a host leaves every recovery to
	// Kratos: tests start once it has a verdict, whichever it is.
	if !strings.Contains(cfg, "verify_wiring: false") {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), `"event":"wiring_check"`) {
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("the gateway's wiring check did not end within 30s:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return &hostProc{Buffer: &logs, configPath: path, pid: cmd.Process.Pid}, stop
}

// withQueueMode gives the host of path the durable outbox, on a database of
// its own, when INTEGRATION_QUEUE=postgres: the suite then runs the
// journeys through the outbox. A config with a queue section of its own
// keeps it.
func withQueueMode(t testing.TB, path string) {
	t.Helper()
	if !queueMode() {
		return
	}
	raw, err := os.ReadFile(path)
	if err != nil || strings.Contains(string(raw), "\nqueue:") || !strings.Contains(string(raw), "webhook:") {
		return
	}
	dsn := pgtest.NewDatabase(t)
	if u, err := url.Parse(dsn); err == nil {
		if pass, ok := u.User.Password(); ok {
			observed.secret(pass)
		}
	}
	raw = append(raw, fmt.Sprintf("\nqueue:\n  postgres_dsn: %q\n  migrate: auto\n", dsn)...)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}
