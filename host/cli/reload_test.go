package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratospublic"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

// reloadCase is what an edit of one key does on a running host.
type reloadCase struct {
	// to is the key's new value, also lists other keys the edit must
	// change for the config to stay valid.
	to   any
	also map[string]any
	// inUse reports whether the running host uses the edited value; nil
	// means the key is restart-only.
	inUse func(h *reloadHarness, key string, to any) bool
}

// Every key of configs/gateway.yaml either takes effect on reload (the
// running host uses the new value) or is restart-only (the running value
// stays, and the log and /health/ready name the key). A key added to the
// file without a case here fails the test.
func TestEveryKeyTakesEffectOnReloadOrIsRestartOnly(t *testing.T) {
	t.Parallel()
	pki := smtptest.NewPKI(t)
	certFile, keyFile := writeKeyPair(t, pki)
	other := newFakeKratos(t)
	restart := (func(*reloadHarness, string, any) bool)(nil)
	// The other keys an OAuth2 edit needs to stay a valid config.
	clientCredentials := map[string]any{"smtp.auth": "xoauth2", "smtp.oauth2.token_url": "https://login.example.org/t/token",
		"smtp.oauth2.client_id": "app", "smtp.oauth2.client_secret": "client-secret", "smtp.oauth2.scopes": []string{"smtp.send"}}
	serviceAccount := map[string]any{"smtp.auth": "xoauth2", "smtp.oauth2.service_account_file": "/etc/kratos-email-gateway/google.json",
		"smtp.oauth2.subject": "no-reply@example.com"}
	cases := map[string]reloadCase{
		"enabled":                          {to: false, inUse: inSnapshot},
		"listen":                           {to: "127.0.0.1:18080", inUse: restart},
		"gate.listen":                      {to: "127.0.0.1:18082", inUse: restart},
		"tls.cert_file":                    {to: certFile, also: map[string]any{"tls.key_file": keyFile}, inUse: restart},
		"tls.key_file":                     {to: keyFile, also: map[string]any{"tls.cert_file": certFile}, inUse: restart},
		"webhook.api_key":                  {to: "another-webhook-key-0123456789", inUse: keyAccepted("/courier")},
		"kratos.admin_url":                 {to: other.URL, inUse: adminURLInUse(other)},
		"kratos.public_url":                {to: other.URL, inUse: publicURLInUse(other)},
		"kratos.login_ui_url":              {to: "http://ui.example/login", inUse: inSnapshot},
		"kratos.settings_ui_url":           {to: "http://ui.example/settings", inUse: inSnapshot},
		"kratos.verify_wiring":             {to: false, inUse: restart},
		"plugin.path":                      {to: "/elsewhere/gateway-email-plugin", inUse: restart},
		"plugin.sha256":                    {to: strings.Repeat("ab", 32), inUse: restart},
		"password.length":                  {to: 20, inUse: inPlugin},
		"password.ttl":                     {to: "2h", inUse: all(inSnapshot, inPlugin)},
		"password.cooldown":                {to: "5m", inUse: all(inSnapshot, inPlugin)},
		"password.keep_current_until_used": {to: false, inUse: all(inSnapshot, inPlugin)},
		"password.revoke_sessions":         {to: false, inUse: all(inSnapshot, inPlugin)},
		"secrets.cipher":                   {to: []string{"fedcba9876543210fedcba9876543210"}, inUse: inSnapshot},
		"smtp.host":                        {to: "mail.example.org", inUse: inPlugin},
		"smtp.port":                        {to: 587, inUse: inPlugin},
		"smtp.email_address":               {to: "accounts@example.org", inUse: inPlugin},
		"smtp.sender_name":                 {to: "Other Accounts", inUse: inPlugin},
		"smtp.username":                    {to: "someone", inUse: inPlugin},
		"smtp.authorization_code":          {to: "another-authorization-code", inUse: inPlugin},
		"smtp.security":                    {to: "starttls", inUse: inPlugin},
		"smtp.ca_file":                     {to: pki.CAFile, inUse: inPlugin},
		"smtp.dkim.domain":                 {to: "example.org", also: map[string]any{"smtp.dkim.selector": "s1", "smtp.dkim.private_key_file": "/etc/kratos-email-gateway/dkim.pem"}, inUse: inPlugin},
		"smtp.dkim.selector":               {to: "s2027", also: map[string]any{"smtp.dkim.domain": "example.org", "smtp.dkim.private_key_file": "/etc/kratos-email-gateway/dkim.pem"}, inUse: inPlugin},
		"smtp.dkim.private_key_file":       {to: "/etc/kratos-email-gateway/dkim-2027.pem", also: map[string]any{"smtp.dkim.domain": "example.org", "smtp.dkim.selector": "s1"}, inUse: inPlugin},
		"smtp.auth":                        {to: "plain", also: map[string]any{"smtp.authorization_code": "another-authorization-code"}, inUse: inPlugin},
		"smtp.oauth2.token_url":            {to: "https://login.example.org/tenant/oauth2/v2.0/token", also: clientCredentials, inUse: inPlugin},
		"smtp.oauth2.client_id":            {to: "another-app", also: clientCredentials, inUse: inPlugin},
		"smtp.oauth2.client_secret":        {to: "another-client-secret", also: clientCredentials, inUse: inPlugin},
		"smtp.oauth2.client_auth":          {to: "post", also: clientCredentials, inUse: inPlugin},
		"smtp.oauth2.scopes":               {to: []string{"https://outlook.office365.com/.default"}, also: clientCredentials, inUse: inPlugin},
		"smtp.oauth2.service_account_file": {to: "/etc/kratos-email-gateway/sa.json", also: serviceAccount, inUse: inPlugin},
		"smtp.oauth2.subject":              {to: "accounts@example.org", also: serviceAccount, inUse: inPlugin},
		"template.subject":                 {to: "Another subject", inUse: inPlugin},
		"template.text":                    {to: "Another text {{.Password}}", inUse: inPlugin},
		"template.html":                    {to: "<p>{{.Password}}</p>", inUse: inPlugin},
		"template.dir":                     {to: t.TempDir(), inUse: inPlugin},
		"template.locale_trait":            {to: "language", inUse: inPlugin},
		"admin.listen":                     {to: "127.0.0.1:18081", also: map[string]any{"admin.api_key": "admin-key-0123456789abcdef"}, inUse: restart},
		"admin.api_key":                    {to: "admin-key-0123456789abcdef", inUse: keyAccepted("/admin/identities/x/reset")},
		"demo_ui.listen":                   {to: "127.0.0.1:14455", inUse: restart},
		"demo_ui.mailpit_url":              {to: "http://mail.example/inbox", inUse: mailpitURLInUse},
		"demo_ui.kratos_browser_url":       {to: "http://kratos.example", inUse: browserURLInUse},
		"log.format":                       {to: "text", inUse: restart},
		"log.level":                        {to: "debug", inUse: debugLogged},
		"timeouts.kratos":                  {to: "100ms", inUse: kratosTimeoutInUse},
		"timeouts.smtp":                    {to: "7s", inUse: inSnapshot},
		"timeouts.courier":                 {to: "5s", inUse: inSnapshot},

		// The notices: their templates are the plugin's, their switches
		// and retries are read from the snapshot as each notice is tried.
		"template.password_changed.subject": {to: "Changed", inUse: inPlugin},
		"template.password_changed.text":    {to: "Changed at {{formatTime .At}}", inUse: inPlugin},
		"template.password_changed.html":    {to: "<p>Changed at {{formatTime .At}}</p>", inUse: inPlugin},
		"template.reset_void.subject":       {to: "Nothing changed", inUse: inPlugin},
		"template.reset_void.text":          {to: "Nothing changed at {{formatTime .At}}", inUse: inPlugin},
		"template.reset_void.html":          {to: "<p>Nothing changed</p>", inUse: inPlugin},
		"notices.password_changed.enabled":  {to: false, inUse: inSnapshot},
		"notices.reset_void.enabled":        {to: false, inUse: inSnapshot},
		"notices.max_attempts":              {to: 3, inUse: inSnapshot},
		"notices.retry_backoff":             {to: "2m", inUse: inSnapshot},

		// The outbox is built at start; the two ages are read per job and
		// per readiness probe.
		"queue.postgres_dsn":     {to: "postgres://gateway@127.0.0.1:5432/gateway", inUse: restart},
		"queue.migrate":          {to: "auto", inUse: restart},
		"queue.workers":          {to: 4, inUse: restart},
		"queue.recovery_workers": {to: 2, inUse: restart},
		"queue.max_attempts":     {to: 10, inUse: restart},
		"queue.retention":        {to: "2h", inUse: restart},
		"queue.job_timeout":      {to: "30s", inUse: restart},
		"queue.max_age":          {to: "1h", inUse: inSnapshot},
		"queue.ready_max_age":    {to: "1m", inUse: inSnapshot},
	}

	raw, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	shippedKeys := koanf.New(".")
	if err := shippedKeys.Load(rawbytes.Provider(raw), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	keys := shippedKeys.Keys()
	for key := range cases {
		if !slices.Contains(keys, key) {
			t.Errorf("%s has a case but is not a key of configs/gateway.yaml", key)
		}
	}
	for _, key := range keys {
		tc, ok := cases[key]
		if !ok {
			t.Errorf("%s: say what a reload does with it: add a case (and make it take effect, or list it in config's restartOnly)", key)
			continue
		}
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			h := newReloadHarness(t, raw)
			if tc.inUse != nil && tc.inUse(h, key, tc.to) {
				t.Fatalf("the host uses %v before the edit: the case proves nothing", tc.to)
			}
			h.edit(t, key, tc.to, tc.also)
			if tc.inUse != nil {
				if !tc.inUse(h, key, tc.to) {
					t.Errorf("after the reload the host does not use the new %s", key)
				}
				if got := h.svc.store.RestartNeeded(); len(got) != 0 {
					t.Errorf("restart needed for %q after an edit that took effect", got)
				}
				return
			}
			running, _ := h.svc.store.Current().Value(key)
			started, _ := h.started.Value(key)
			if !reflect.DeepEqual(running, started) {
				t.Errorf("restart-only %s changed without a restart: %v", key, running)
			}
			if !slices.Contains(h.svc.store.RestartNeeded(), key) {
				t.Errorf("RestartNeeded = %q, want %s", h.svc.store.RestartNeeded(), key)
			}
			if !strings.Contains(h.logs.String(), `"msg":"config key changed on disk applies only after a restart; keeping the running value","key":"`+key+`"`) {
				t.Errorf("the log does not name %s:\n%s", key, h.logs)
			}
			var ready struct {
				RestartNeeded string `json:"restart_needed"`
			}
			if code, body := h.serve(h.svc.server.Handler(), http.MethodGet, "/health/ready", ""); json.Unmarshal([]byte(body), &ready) != nil ||
				!slices.Contains(strings.Split(ready.RestartNeeded, ", "), key) {
				t.Errorf("/health/ready = %d %s, want restart_needed naming %s", code, body, key)
			}
		})
	}
}

// reloadHarness is serve's services on a fake plugin and a fake Kratos,
// with the reloader serve uses.
type reloadHarness struct {
	svc      *services
	reloader *config.Reloader
	started  *config.Config
	plugin   *recordingPlugin
	kratos   *fakeKratos
	base     *koanf.Koanf
	logs     *testlog.Buffer
}

func newReloadHarness(t *testing.T, shippedYAML []byte) *reloadHarness {
	t.Helper()
	h := &reloadHarness{kratos: newFakeKratos(t), base: koanf.New("."), logs: &testlog.Buffer{}}
	if err := h.base.Load(rawbytes.Provider(shippedYAML), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	for key, val := range map[string]any{
		"webhook.api_key":   "0123456789abcdef",
		"secrets.cipher":    []string{"0123456789abcdef0123456789abcdef"},
		"kratos.admin_url":  h.kratos.URL,
		"kratos.public_url": h.kratos.URL,
		"demo_ui.listen":    "127.0.0.1:0",
	} {
		if err := h.base.Set(key, val); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	h.started = writeConfig(t, path, h.base)
	h.plugin = newRecordingPlugin(h.started.PluginConfig)
	level := new(slog.LevelVar)
	level.Set(logLevel(h.started))
	h.svc = buildServices(h.started, h.plugin, logging{
		host:   newLogger(h.started, level, h.logs),
		level:  level,
		plugin: launchConfig(h.started, nil, h.logs).Logger,
	}, nil)
	h.reloader = h.svc.reloader(path, nil)
	return h
}

// edit writes the started config with key set to to (and also), and
// reloads it.
func (h *reloadHarness) edit(t *testing.T, key string, to any, also map[string]any) {
	t.Helper()
	k := h.base.Copy()
	for key, val := range also {
		if err := k.Set(key, val); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Set(key, to); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, h.reloader.Path, k)
	if err := h.reloader.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// writeConfig writes k to path as YAML and returns the config it loads as.
func writeConfig(t *testing.T, path string, k *koanf.Koanf) *config.Config {
	t.Helper()
	raw, err := k.Marshal(yaml.Parser())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve answers one request with h and returns status and body.
func (h *reloadHarness) serve(handler http.Handler, method, path, auth string) (int, string) {
	r := httptest.NewRequest(method, path, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	r.Header.Set("Cookie", "ory_kratos_session=probe")
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// inSnapshot: the handlers read the key from the config snapshot per
// request.
func inSnapshot(h *reloadHarness, key string, to any) bool {
	want := h.loaded(key, to)
	got, ok := h.svc.store.Current().Value(key)
	w, _ := want.Value(key)
	return ok && reflect.DeepEqual(got, w)
}

// inPlugin: the plugin was configured with the key's new value.
func inPlugin(h *reloadHarness, key string, to any) bool {
	return reflect.DeepEqual(jsonAt(h.plugin.config(), key), jsonAt(h.loaded(key, to).PluginConfig, key))
}

// loaded is the config the edit of key would load as.
func (h *reloadHarness) loaded(key string, to any) *config.Config {
	k := h.base.Copy()
	_ = k.Set(key, to)
	raw, _ := k.Marshal(yaml.Parser())
	cfg, err := config.Parse(raw, nil)
	if err != nil {
		panic(err)
	}
	return cfg
}

func jsonAt(raw json.RawMessage, key string) any {
	var v any
	_ = json.Unmarshal(raw, &v)
	for name := range strings.SplitSeq(key, ".") {
		m, _ := v.(map[string]any)
		v = m[name]
	}
	return v
}

func all(checks ...func(*reloadHarness, string, any) bool) func(*reloadHarness, string, any) bool {
	return func(h *reloadHarness, key string, to any) bool {
		for _, c := range checks {
			if !c(h, key, to) {
				return false
			}
		}
		return true
	}
}

// keyAccepted: a call to path with the new key passes the key check.
func keyAccepted(path string) func(*reloadHarness, string, any) bool {
	return func(h *reloadHarness, _ string, to any) bool {
		handler := h.svc.server.Handler()
		if strings.HasPrefix(path, "/admin/") {
			handler = h.svc.server.AdminHandler()
		}
		code, _ := h.serve(handler, http.MethodPost, path, "Bearer "+to.(string))
		return code != http.StatusUnauthorized
	}
}

// adminURLInUse: readiness asks the other Kratos's admin API.
func adminURLInUse(other *fakeKratos) func(*reloadHarness, string, any) bool {
	return func(h *reloadHarness, _ string, _ any) bool {
		before := other.hits("/health/ready")
		h.serve(h.svc.server.Handler(), http.MethodGet, "/health/ready", "")
		return other.hits("/health/ready") == before+1
	}
}

// publicURLInUse: the gate and the demo UI ask the other Kratos who the
// session is.
func publicURLInUse(other *fakeKratos) func(*reloadHarness, string, any) bool {
	return func(h *reloadHarness, _ string, _ any) bool {
		before := other.hits("/sessions/whoami")
		h.serve(h.svc.server.Handler(), http.MethodGet, "/gate", "")
		h.serve(h.svc.demo, http.MethodGet, "/", "")
		return other.hits("/sessions/whoami") == before+2
	}
}

// kratosTimeoutInUse: both Kratos clients give up on a Kratos slower than
// the new deadline.
func kratosTimeoutInUse(h *reloadHarness, _ string, _ any) bool {
	h.kratos.delay.Store(int64(500 * time.Millisecond))
	defer h.kratos.delay.Store(0)
	ctx := context.Background()
	readyErr := h.svc.kratos.Ready(ctx)
	_, sessionErr := h.svc.sessions.Session(ctx, "ory_kratos_session=probe", "")
	return readyErr != nil && !errors.Is(sessionErr, kratospublic.ErrNoSession)
}

// debugLogged: the host and the plugin's lines log at debug.
func debugLogged(h *reloadHarness, _ string, _ any) bool {
	h.svc.logs.host.Debug("host debug probe")
	h.svc.logs.plugin.Debug("plugin debug probe")
	return strings.Contains(h.logs.String(), "host debug probe") && strings.Contains(h.logs.String(), "plugin debug probe")
}

// mailpitURLInUse: the demo UI links the new inbox.
func mailpitURLInUse(h *reloadHarness, _ string, to any) bool {
	_, body := h.serve(h.svc.demo, http.MethodGet, "/", "")
	return strings.Contains(body, `href="`+to.(string)+`"`)
}

// browserURLInUse: the demo UI sends browsers to the new Kratos URL.
func browserURLInUse(h *reloadHarness, _ string, to any) bool {
	r := httptest.NewRequest(http.MethodGet, "/login", nil)
	w := httptest.NewRecorder()
	h.svc.demo.ServeHTTP(w, r)
	return strings.HasPrefix(w.Header().Get("Location"), to.(string)+"/")
}

// recordingPlugin is a configured plugin that keeps the last config it
// accepted.
type recordingPlugin struct {
	sdktest.Fake
	mu   sync.Mutex
	last json.RawMessage
}

func newRecordingPlugin(started json.RawMessage) *recordingPlugin {
	p := &recordingPlugin{last: started}
	p.ConfigureF = func(_ context.Context, r *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.last = r.Config
		return &sdk.ConfigureResponse{}, nil
	}
	p.HealthF = func(context.Context, *sdk.HealthRequest) (*sdk.HealthResponse, error) {
		return &sdk.HealthResponse{Configured: true}, nil
	}
	return p
}

func (p *recordingPlugin) Restarts() int { return 0 }

func (p *recordingPlugin) config() json.RawMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// fakeKratos answers readiness (admin API) and whoami (public API, no
// session), counting the calls by path, after delay.
type fakeKratos struct {
	URL   string
	delay atomic.Int64
	mu    sync.Mutex
	calls map[string]int
}

func newFakeKratos(t *testing.T) *fakeKratos {
	t.Helper()
	f := &fakeKratos{calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls[r.URL.Path]++
		f.mu.Unlock()
		time.Sleep(time.Duration(f.delay.Load()))
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/health/ready":
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		case "/sessions/whoami":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":401}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":404}}`))
		}
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeKratos) hits(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

// writeKeyPair writes the PKI's server certificate and key as PEM files.
func writeKeyPair(t *testing.T, pki smtptest.PKI) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	key, err := x509.MarshalPKCS8PrivateKey(pki.Cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.Cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
