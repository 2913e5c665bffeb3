package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const minimal = `
webhook:
  api_key: "0123456789abcdef-secret"
secrets:
  cipher: ["0123456789abcdef0123456789abcdef-cipher"]
smtp:
  host: smtp.example.com
  email_address: no-reply@example.com
  sender_name: Example
`

func TestParseAppliesDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Enabled: true,
		Listen:  "127.0.0.1:8080",
		Webhook: Webhook{APIKey: "0123456789abcdef-secret"},
		Kratos: Kratos{
			AdminURL:      "http://127.0.0.1:4434",
			PublicURL:     "http://127.0.0.1:4433",
			LoginUIURL:    "http://127.0.0.1:4455/login",
			SettingsUIURL: "http://127.0.0.1:4455/settings",
			VerifyWiring:  true,
		},
		Plugin:   Plugin{Path: "bin/gateway-email-plugin"},
		Password: Password{Length: 16, TTL: time.Hour, Cooldown: time.Minute, KeepCurrentUntilUsed: true, RevokeSessions: true},
		Secrets:  Secrets{Cipher: []string{"0123456789abcdef0123456789abcdef-cipher"}},
		Log:      Log{Format: "json", Level: "info"},
		Timeouts: Timeouts{Kratos: 3 * time.Second, SMTP: 5 * time.Second, Courier: 8 * time.Second},
		Notices: Notices{
			PasswordChanged: NoticeSwitch{Enabled: true},
			ResetVoid:       NoticeSwitch{Enabled: true},
			MaxAttempts:     5,
			RetryBackoff:    30 * time.Second,
		},
		Queue: Queue{Migrate: "manual", Workers: 8, MaxAttempts: 100, MaxAge: 6 * time.Hour, Retention: time.Hour, JobTimeout: time.Minute, ReadyMaxAge: 5 * time.Minute},
	}
	if diff := cmp.Diff(want, *c, cmpIgnorePluginConfig); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

var cmpIgnorePluginConfig = cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "PluginConfig" || p.String() == "Keyring" }, cmp.Ignore())

func TestEnvironmentOverridesFileAndReachesPlugin(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(minimal), []string{
		"GATEWAY_ENABLED=false",
		"GATEWAY_PASSWORD__TTL=15m",
		"GATEWAY_SMTP__AUTHORIZATION_CODE=s3cret-code",
		"GATEWAY_SMTP__PORT=587",
		"OTHER_SMTP__HOST=ignored",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Enabled || c.Password.TTL != 15*time.Minute {
		t.Errorf("enabled=%v ttl=%s, want the environment's false and 15m", c.Enabled, c.Password.TTL)
	}
	var plugin struct {
		Password map[string]any `json:"password"`
		SMTP     map[string]any `json:"smtp"`
	}
	if err := json.Unmarshal(c.PluginConfig, &plugin); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"host": "smtp.example.com", "email_address": "no-reply@example.com", "sender_name": "Example",
		"authorization_code": "s3cret-code", "port": "587",
	}
	if diff := cmp.Diff(want, plugin.SMTP); diff != "" {
		t.Errorf("plugin smtp section (-want +got):\n%s", diff)
	}
	if plugin.Password["length"] != float64(16) {
		t.Errorf("plugin password section = %v, want length 16", plugin.Password)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		env     []string
		wantKey string
	}{
		{"missing api key", "smtp: {host: x}", nil, "webhook.api_key: required"},
		{"short api key", "webhook: {api_key: short}", nil, "webhook.api_key: too short"},
		{"bad listen", minimal + "listen: nope", nil, "listen:"},
		{"relative admin url", minimal + "kratos: {admin_url: /admin}", nil, "kratos.admin_url:"},
		{"bad sha256", minimal + "plugin: {sha256: abc}", nil, "plugin.sha256:"},
		{"ttl too short", minimal + "password: {ttl: 500ms}", nil, "password.ttl:"},
		{"negative cooldown", minimal + "password: {cooldown: -1s}", nil, "password.cooldown:"},
		{"ttl not a duration", minimal, []string{"GATEWAY_PASSWORD__TTL=soon"}, "ttl"},
		{"log format", minimal + "log: {format: xml}", nil, "log.format:"},
		{"zero timeout", minimal + "timeouts: {kratos: 0s}", nil, "timeouts.kratos:"},
		{"unknown key", minimal + "enabeld: true", nil, "unknown key(s) enabeld"},
		{"short cipher key", minimal, []string{"GATEWAY_SECRETS__CIPHER=short"}, "secrets.cipher[0]"},
		{"cipher missing", "webhook: {api_key: 0123456789abcdef-secret}", nil, "secrets.cipher: required"},
		{"cipher missing with keep_current_until_used false", "webhook: {api_key: 0123456789abcdef-secret}\npassword: {keep_current_until_used: false}", nil, "secrets.cipher: required"},
		{"courier timeout above Kratos v26's 10s", minimal + "timeouts: {courier: 10s}", nil, "timeouts.courier:"},
		{"courier timeout too short", minimal + "timeouts: {courier: 500ms}", nil, "timeouts.courier:"},
		{"not yaml", "webhook: [", nil, "parse config YAML"},
		{"no notice attempt", minimal + "notices: {max_attempts: 0}", nil, "notices.max_attempts:"},
		{"queue migrate unknown", minimal + "queue: {migrate: always}", nil, "queue.migrate:"},
		{"queue without workers", minimal + "queue: {workers: 0}", nil, "queue.workers:"},
		{"queue with negative recovery workers", minimal + "queue: {recovery_workers: -1}", nil, "queue.recovery_workers: -1 is outside 0..256"},
		{"queue without attempts", minimal + "queue: {max_attempts: 0}", nil, "queue.max_attempts:"},
		{"queue max_age too short", minimal + "queue: {max_age: 5s}", nil, "queue.max_age:"},
		{"queue retention too short", minimal + "queue: {retention: 10s}", nil, "queue.retention:"},
		{"queue job_timeout too short", minimal + "queue: {job_timeout: 1s}", nil, "queue.job_timeout:"},
		{"queue ready_max_age too short", minimal + "queue: {ready_max_age: 10ms}", nil, "queue.ready_max_age:"},
		{"too many notice attempts", minimal + "notices: {max_attempts: 11}", nil, "notices.max_attempts:"},
		{"notice backoff too short", minimal + "notices: {retry_backoff: 500ms}", nil, "notices.retry_backoff:"},
		{"notice backoff too long", minimal + "notices: {retry_backoff: 11m}", nil, "notices.retry_backoff:"},
		{"notice switch not a bool", minimal, []string{"GATEWAY_NOTICES__RESET_VOID__ENABLED=perhaps"}, "enabled"},
		{"unknown notice", minimal + "notices: {password_expired: {enabled: true}}", nil, "unknown key(s) password_expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.yaml), tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("Parse error = %v, want one naming %q", err, tt.wantKey)
			}
		})
	}
}

func TestValidationListsEveryProblemWithoutSecrets(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte(`
webhook: {api_key: "short-secret"}
listen: nope
log: {level: loud}
`), nil)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v, want a *ValidationError", err)
	}
	if len(ve.Problems) != 4 {
		t.Errorf("problems = %q, want 4 (api_key, listen, secrets.cipher, log.level)", ve.Problems)
	}
	if strings.Contains(err.Error(), "short-secret") {
		t.Errorf("error reveals the API key: %v", err)
	}
}

func TestLoadReportsMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(t.TempDir()+"/absent.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "read config") {
		t.Fatalf("Load(absent) = %v, want a read error", err)
	}
}

func TestShippedConfigParsesOnceTheSecretIsSet(t *testing.T) {
	t.Parallel()
	c, err := Load("../../configs/gateway.yaml", []string{"GATEWAY_WEBHOOK__API_KEY=0123456789abcdef",
		"GATEWAY_SECRETS__CIPHER=0123456789abcdef0123456789abcdef-new,0123456789abcdef0123456789abcdef-old"})
	if err != nil {
		t.Fatalf("configs/gateway.yaml: %v", err)
	}
	if !c.Enabled || c.Listen != "127.0.0.1:8080" || len(c.Secrets.Cipher) != 2 {
		t.Errorf("shipped config = %+v, want enabled on 127.0.0.1:8080 with two cipher keys from the environment", c)
	}
}

// keep_current_until_used: false still loads (old files keep working) but
// earns a warning, since self-service recovery no longer honours it.
func TestKeepCurrentFalseWarns(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(minimal+"password: {keep_current_until_used: false}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "password.keep_current_until_used") {
		t.Errorf("warnings = %q, want one naming password.keep_current_until_used", w)
	}
	c, err = Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings of the default config = %q, want none", w)
	}
}

// Each notice is switched off on its own, in the file or the environment.
func TestNoticesSwitchOffOneByOne(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		yaml                string
		env                 []string
		wantChanged, wantRV bool
	}{
		{"defaults", minimal, nil, true, true},
		{"password_changed off in the file", minimal + "notices: {password_changed: {enabled: false}}", nil, false, true},
		{"reset_void off in the environment", minimal, []string{"GATEWAY_NOTICES__RESET_VOID__ENABLED=false"}, true, false},
		{"both off", minimal + "notices: {password_changed: {enabled: false}, reset_void: {enabled: false}}", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tt.yaml), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Notices.PasswordChanged.Enabled != tt.wantChanged || c.Notices.ResetVoid.Enabled != tt.wantRV {
				t.Errorf("notices = %+v, want password_changed %t, reset_void %t", c.Notices, tt.wantChanged, tt.wantRV)
			}
		})
	}
}
