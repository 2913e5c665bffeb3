// Package config loads, validates and snapshots the host's configuration from
// a YAML file with GATEWAY_ environment overrides.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
)

// EnvPrefix starts every environment override; "__" separates levels, so
// GATEWAY_SMTP__AUTHORIZATION_CODE sets smtp.authorization_code.
const EnvPrefix = "GATEWAY_"

// PluginSections are handed to the plugin as they are; the plugin validates
// them (through Configure), so the host needs no knowledge of SMTP.
var pluginSections = []string{"password", "smtp", "template"}

// Config is the host's view of gateway.yaml. Handlers read one snapshot per
// request; nothing mutates a Config after Load returns it.
type Config struct {
	// Enabled is the admin toggle: false sends recovery mails as Kratos wrote them.
	Enabled bool `koanf:"enabled"`
	// Listen is host:port of the HTTP server Kratos and proxies call.
	Listen  string  `koanf:"listen"`
	Webhook Webhook `koanf:"webhook"`
	Kratos  Kratos  `koanf:"kratos"`
	Plugin  Plugin  `koanf:"plugin"`
	// Password holds the host's part of password policy; the plugin reads the rest.
	Password Password `koanf:"password"`
	Secrets  Secrets  `koanf:"secrets"`
	Log      Log      `koanf:"log"`
	// Timeouts bound each outside call so a request ends before Kratos gives up on it.
	Timeouts Timeouts `koanf:"timeouts"`
	// Admin is the admin API's own listener and key.
	Admin Admin `koanf:"admin"`
	// DemoUI serves the local stack's self-service pages.
	DemoUI DemoUI `koanf:"demo_ui"`
	// TLS is the certificate of the listen, gate.listen and admin.listen
	// listeners (see listeners.go).
	TLS TLS `koanf:"tls"`
	// Gate is GET /gate's own listener (see listeners.go).
	Gate Gate `koanf:"gate"`
	// Notices are the mails that tell users about their account and carry
	// no secret (package notify).
	Notices Notices `koanf:"notices"`
	Queue   Queue   `koanf:"queue"`

	// PluginConfig is the password, smtp and template sections as JSON, passed
	// to the plugin's Configure.
	PluginConfig json.RawMessage `koanf:"-"`
	// Keyring is built from Secrets.Cipher; nil without keys.
	Keyring *sealing.Keyring `koanf:"-"`
}

// Webhook authenticates Kratos's calls.
type Webhook struct {
	// APIKey is a secret: Kratos sends "Authorization: Bearer <APIKey>".
	APIKey string `koanf:"api_key"`
}

// Kratos says where Kratos and its UI live.
type Kratos struct {
	AdminURL      string `koanf:"admin_url"`
	PublicURL     string `koanf:"public_url"`
	LoginUIURL    string `koanf:"login_ui_url"`
	SettingsUIURL string `koanf:"settings_ui_url"`
	// VerifyWiring makes serve prove, with a throwaway canary identity, that
	// Kratos calls the password migration hook before a recovery relies on
	// it (package wiring).
	VerifyWiring bool `koanf:"verify_wiring"`
}

// Plugin locates the email plugin binary.
type Plugin struct {
	Path   string `koanf:"path"`
	SHA256 string `koanf:"sha256"`
}

// Password is the host's part of the temporary password policy.
type Password struct {
	// Length is validated by the plugin, which generates the password.
	Length int `koanf:"length"`
	// TTL is how long a temporary password may log in.
	TTL time.Duration `koanf:"ttl"`
	// Cooldown is the least time between two mailed resets of one identity.
	Cooldown time.Duration `koanf:"cooldown"`
	// KeepCurrentUntilUsed is kept so existing files still load: self-service
	// recovery always keeps the current password until the temporary one is
	// used, since anyone who knows an address can start one. false only
	// earns a warning (Warnings).
	KeepCurrentUntilUsed bool `koanf:"keep_current_until_used"`
	// RevokeSessions ends the identity's other sessions when the temporary
	// password is used (at once, when it replaces the password at once).
	RevokeSessions bool `koanf:"revoke_sessions"`
}

// Secrets are keys the gateway holds.
type Secrets struct {
	// Cipher seals what the gateway keeps in metadata_admin; the first key
	// seals, all open. In the environment: comma-separated.
	Cipher []string `koanf:"cipher"`
}

// Log selects the log format and level.
type Log struct {
	Format string `koanf:"format"` // json | text
	Level  string `koanf:"level"`  // debug | info | warn | error
}

// Admin configures the admin API (POST /admin/identities/{id}/reset), on a
// listener of its own so it can stay on loopback or a private network.
type Admin struct {
	// Listen is host:port; empty turns the admin API off.
	Listen string `koanf:"listen"`
	// APIKey is a secret, different from webhook.api_key: admin consoles
	// send "Authorization: Bearer <api_key>".
	APIKey string `koanf:"api_key"`
}

// DemoUI configures the demo self-service UI of the local stack.
type DemoUI struct {
	// Listen is host:port; empty (the default) turns the demo UI off.
	Listen string `koanf:"listen"`
	// MailpitURL is linked from the pages so a newcomer finds the inbox.
	MailpitURL string `koanf:"mailpit_url"`
	// KratosBrowserURL is Kratos's public URL as browsers reach it, when it
	// differs from kratos.public_url (containers); empty means the same.
	KratosBrowserURL string `koanf:"kratos_browser_url"`
}

// Timeouts for calls leaving the host.
type Timeouts struct {
	Kratos time.Duration `koanf:"kratos"`
	SMTP   time.Duration `koanf:"smtp"`
	// Courier bounds the whole answer to one courier message; it stays
	// below the 10 s after which Kratos v26's courier gives up and retries.
	Courier time.Duration `koanf:"courier"`
}

// Notices configures the notices: which are sent, and how often one that
// cannot be sent is tried. Each notice reads the snapshot when it is tried,
// so a reload applies to the notices still queued.
type Notices struct {
	// PasswordChanged: "your password was changed", after the settings
	// hook saw a new password (the forced change or any other).
	PasswordChanged NoticeSwitch `koanf:"password_changed"`
	// ResetVoid: "someone asked to recover your account; you signed in
	// with your current password, so nothing changed".
	ResetVoid NoticeSwitch `koanf:"reset_void"`
	// MaxAttempts bounds the tries of one notice, the first included.
	MaxAttempts int `koanf:"max_attempts"`
	// RetryBackoff is the wait before the second try; it doubles before
	// each further one, up to MaxNoticeRetryWait.
	RetryBackoff time.Duration `koanf:"retry_backoff"`
}

// Queue configures the durable outbox (package outbox). Without
// PostgresDSN the gateway delivers each courier message while Kratos waits.
type Queue struct {
	// PostgresDSN is the PostgreSQL database of the outbox, a URL or a
	// key=value DSN; it may hold a password: a secret.
	PostgresDSN string `koanf:"postgres_dsn"`
	// Migrate is manual (`gateway queue migrate`) or auto (at start).
	Migrate string `koanf:"migrate"`
	// Workers per queue (recovery, mail) on this host.
	Workers int `koanf:"workers"`
	// RecoveryWorkers, when not 0, is the recovery queue's instead: fewer
	// leave CPU to the mail queue's login codes on a small machine.
	RecoveryWorkers int `koanf:"recovery_workers"`
	// MaxAttempts and MaxAge bound the retries of one message.
	MaxAttempts int           `koanf:"max_attempts"`
	MaxAge      time.Duration `koanf:"max_age"`
	// Retention keeps finished jobs, for duplicate detection and operators.
	Retention time.Duration `koanf:"retention"`
	// JobTimeout bounds one delivery from the outbox; a job a crashed host
	// left running is run again after twice this.
	JobTimeout time.Duration `koanf:"job_timeout"`
	// ReadyMaxAge: /health/ready fails while a message waits longer.
	ReadyMaxAge time.Duration `koanf:"ready_max_age"`
}

// NoticeSwitch turns one notice on or off.
type NoticeSwitch struct {
	Enabled bool `koanf:"enabled"`
}

// Limits of notices.max_attempts and notices.retry_backoff: ten tries with
// a wait of at most an hour between two keep a notice's last try within a
// day, when it still tells the user something.
const (
	MaxNoticeAttempts  = 10
	MinNoticeBackoff   = time.Second
	MaxNoticeBackoff   = 10 * time.Minute
	MaxNoticeRetryWait = time.Hour
)

// MaxCourierTimeout keeps every /courier answer inside the smallest courier
// deadline of the supported Kratos versions (v26: 10 s; v1.3.1: 30 s), with
// a margin for the network and Kratos's own work.
const MaxCourierTimeout = 9 * time.Second

// defaults mirror configs/gateway.yaml, so a minimal file still works. The
// plugin defaults its own sections (smtp.port follows smtp.security).
func defaults() map[string]any {
	return map[string]any{
		"enabled":                          true,
		"listen":                           "127.0.0.1:8080",
		"kratos.admin_url":                 "http://127.0.0.1:4434",
		"kratos.public_url":                "http://127.0.0.1:4433",
		"kratos.login_ui_url":              "http://127.0.0.1:4455/login",
		"kratos.settings_ui_url":           "http://127.0.0.1:4455/settings",
		"kratos.verify_wiring":             true,
		"plugin.path":                      "bin/gateway-email-plugin",
		"password.length":                  16,
		"password.ttl":                     "1h",
		"password.cooldown":                "60s",
		"password.revoke_sessions":         true,
		"password.keep_current_until_used": true,
		"log.format":                       "json",
		"log.level":                        "info",
		"timeouts.kratos":                  "3s",
		"timeouts.smtp":                    "5s",
		"timeouts.courier":                 "8s",
		"notices.password_changed.enabled": true,
		"notices.reset_void.enabled":       true,
		"notices.max_attempts":             5,
		"notices.retry_backoff":            "30s",
		"queue.migrate":                    "manual",
		"queue.workers":                    8,
		"queue.recovery_workers":           0,
		"queue.max_attempts":               100,
		"queue.max_age":                    "6h",
		"queue.retention":                  "1h",
		"queue.job_timeout":                "1m",
		"queue.ready_max_age":              "5m",
	}
}

// Load reads path, applies overrides from environ (os.Environ's form) and
// validates the result. The error lists every problem with its key.
func Load(path string, environ []string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(raw, environ)
}

// Parse is Load for config bytes already in memory.
func Parse(yamlBytes []byte, environ []string) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(defaults(), "."), nil); err != nil {
		return nil, fmt.Errorf("load defaults: %w", err)
	}
	if err := k.Load(rawbytes.Provider(yamlBytes), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("parse config YAML: %w", err)
	}
	if err := k.Load(confmap.Provider(envOverrides(environ), "."), nil); err != nil {
		return nil, fmt.Errorf("load %s environment overrides: %w", EnvPrefix, err)
	}

	pluginConf := map[string]any{}
	for _, s := range pluginSections {
		if v := k.Get(s); v != nil {
			pluginConf[s] = v
		}
	}
	hostOnly := k.Copy()
	for _, s := range pluginSections {
		if s != "password" {
			hostOnly.Delete(s)
		}
	}

	var c Config
	err := hostOnly.UnmarshalWithConf("", &c, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          "koanf",
	}})
	if err != nil {
		return nil, fmt.Errorf("config: %w", cleanDecodeError(err))
	}
	if c.PluginConfig, err = json.Marshal(pluginConf); err != nil {
		return nil, fmt.Errorf("encode plugin config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(c.Secrets.Cipher) > 0 {
		// Validate checked the keys; New cannot fail on them now.
		if c.Keyring, err = sealing.New(c.Secrets.Cipher); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// envOverrides turns GATEWAY_A__B=v into {"a.b": "v"}.
func envOverrides(environ []string) map[string]any {
	out := map[string]any{}
	for _, kv := range environ {
		key, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(key, EnvPrefix) {
			continue
		}
		path := strings.ToLower(strings.TrimPrefix(key, EnvPrefix))
		out[strings.ReplaceAll(path, "__", ".")] = val
	}
	return out
}

// mapstructure names unknown keys in a long sentence; keep the key names.
func cleanDecodeError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "has invalid keys: "); i >= 0 {
		return fmt.Errorf("unknown key(s) %s: check the spelling against configs/gateway.yaml", msg[i+len("has invalid keys: "):])
	}
	return err
}

// ValidationError lists every problem found in a config, each naming its key.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid config:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Validate checks the host's keys; the plugin checks its own sections.
func (c *Config) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		add("listen: %q is not host:port (e.g. 127.0.0.1:8080)", c.Listen)
	}
	switch {
	case c.Webhook.APIKey == "":
		add("webhook.api_key: required; set it (or GATEWAY_WEBHOOK__API_KEY) to the key Kratos sends as \"Authorization: Bearer <key>\"")
	case len(c.Webhook.APIKey) < 16:
		add("webhook.api_key: too short; use at least 16 random characters")
	}
	for _, u := range []struct{ key, val string }{
		{"kratos.admin_url", c.Kratos.AdminURL},
		{"kratos.public_url", c.Kratos.PublicURL},
		{"kratos.login_ui_url", c.Kratos.LoginUIURL},
		{"kratos.settings_ui_url", c.Kratos.SettingsUIURL},
	} {
		if err := checkURL(u.val); err != nil {
			add("%s: %v", u.key, err)
		}
	}
	if c.Plugin.Path == "" {
		add("plugin.path: required; the path of gateway-email-plugin")
	}
	if s := c.Plugin.SHA256; s != "" && (len(s) != 64 || strings.Trim(strings.ToLower(s), "0123456789abcdef") != "") {
		add("plugin.sha256: must be 64 hex characters (sha256sum of the plugin binary) or empty")
	}
	if c.Password.TTL < time.Second || c.Password.TTL > 7*24*time.Hour {
		add("password.ttl: %s is outside 1s..168h", c.Password.TTL)
	}
	if c.Password.Cooldown < 0 || c.Password.Cooldown > 24*time.Hour {
		add("password.cooldown: %s is outside 0s..24h (0s turns it off)", c.Password.Cooldown)
	}
	if len(c.Secrets.Cipher) == 0 {
		add("secrets.cipher: required (it seals the current password of a pending reset and keys the digests of Kratos's messages); set GATEWAY_SECRETS__CIPHER to %d+ random characters", sealing.MinSecretLength)
	}
	if _, err := sealing.New(c.Secrets.Cipher); len(c.Secrets.Cipher) > 0 && err != nil {
		add("%v", err)
	}
	if c.Admin.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Admin.Listen); err != nil || port == "" {
			add("admin.listen: %q is not host:port (e.g. 127.0.0.1:8081)", c.Admin.Listen)
		}
		switch {
		case c.Admin.APIKey == "":
			add("admin.api_key: required while admin.listen is set; set GATEWAY_ADMIN__API_KEY")
		case len(c.Admin.APIKey) < 16:
			add("admin.api_key: too short; use at least 16 random characters")
		case c.Admin.APIKey == c.Webhook.APIKey:
			add("admin.api_key: must differ from webhook.api_key, so Kratos's key cannot reset passwords")
		}
	}
	if c.DemoUI.Listen != "" {
		if _, port, err := net.SplitHostPort(c.DemoUI.Listen); err != nil || port == "" {
			add("demo_ui.listen: %q is not host:port (e.g. 127.0.0.1:4455)", c.DemoUI.Listen)
		}
	}
	p = append(p, c.listenerProblems()...)
	if !slices.Contains([]string{"json", "text"}, c.Log.Format) {
		add("log.format: %q is not json or text", c.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	for _, t := range []struct {
		key string
		val time.Duration
	}{{"timeouts.kratos", c.Timeouts.Kratos}, {"timeouts.smtp", c.Timeouts.SMTP}} {
		if t.val <= 0 || t.val > time.Minute {
			add("%s: %s is outside (0s, 1m]", t.key, t.val)
		}
	}
	if c.Timeouts.Courier < time.Second || c.Timeouts.Courier > MaxCourierTimeout {
		add("timeouts.courier: %s is outside 1s..%s (Kratos v26's courier gives up after 10s and sends the message again)", c.Timeouts.Courier, MaxCourierTimeout)
	}
	if c.Queue.Migrate != "manual" && c.Queue.Migrate != "auto" {
		add("queue.migrate: %q is neither manual (run `gateway queue migrate`) nor auto (migrate at start)", c.Queue.Migrate)
	}
	if c.Queue.Workers < 1 || c.Queue.Workers > 256 {
		add("queue.workers: %d is outside 1..256", c.Queue.Workers)
	}
	if c.Queue.RecoveryWorkers < 0 || c.Queue.RecoveryWorkers > 256 {
		add("queue.recovery_workers: %d is outside 0..256 (0: queue.workers)", c.Queue.RecoveryWorkers)
	}
	if c.Queue.MaxAttempts < 1 {
		add("queue.max_attempts: %d: give at least 1", c.Queue.MaxAttempts)
	}
	if c.Queue.MaxAge < time.Minute {
		add("queue.max_age: %s is under a minute: a message must outlast a short SMTP outage", c.Queue.MaxAge)
	}
	if c.Queue.Retention < time.Minute {
		add("queue.retention: %s is under a minute: Kratos's retry of a message already taken must still find it", c.Queue.Retention)
	}
	if c.Queue.JobTimeout < 10*time.Second || c.Queue.JobTimeout > time.Hour {
		add("queue.job_timeout: %s is outside 10s..1h: a delivery takes a few Kratos calls, a lock and one SMTP send", c.Queue.JobTimeout)
	}
	if c.Queue.ReadyMaxAge < time.Second {
		add("queue.ready_max_age: %s is under a second", c.Queue.ReadyMaxAge)
	}
	if c.Notices.MaxAttempts < 1 || c.Notices.MaxAttempts > MaxNoticeAttempts {
		add("notices.max_attempts: %d is outside 1..%d (1: a notice that cannot be sent is not tried again)", c.Notices.MaxAttempts, MaxNoticeAttempts)
	}
	if c.Notices.RetryBackoff < MinNoticeBackoff || c.Notices.RetryBackoff > MaxNoticeBackoff {
		add("notices.retry_backoff: %s is outside %s..%s", c.Notices.RetryBackoff, MinNoticeBackoff, MaxNoticeBackoff)
	}
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// Warnings are what an operator should hear about a valid config, logged at
// start and on every reload. They never hold a value of the config.
func (c *Config) Warnings() []string {
	var w []string
	if !c.Kratos.VerifyWiring {
		w = append(w, "kratos.verify_wiring: false: the gateway relies on Kratos's password migration hook without proving that Kratos calls it; if kratos.yml lacks selfservice.methods.password.config.migrate_hook, every user who asks for a recovery is locked out until an admin resets them. Run gateway doctor after every change of kratos.yml.")
	}
	if !c.Password.KeepCurrentUntilUsed {
		w = append(w, "password.keep_current_until_used: false is no longer honoured: self-service recovery always keeps the current password until the temporary one is used, because anyone who knows an address can start one; admin resets (gateway reset, the admin API) still replace it at once. Remove the key.")
	}
	return w
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q must be an absolute http(s) URL", s)
	}
	return nil
}
