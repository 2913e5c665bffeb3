package config

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
)

type applied struct {
	mu      sync.Mutex
	configs []*Config
	refuse  error
}

func (a *applied) apply(_ context.Context, c *Config) ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refuse != nil {
		return nil, a.refuse
	}
	a.configs = append(a.configs, c)
	return []string{"smtp.security is none: test warning"}, nil
}

func newReloader(t *testing.T, body string, environ ...string) (*Reloader, *applied, *testlog.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	write(t, path, body)
	c, err := Load(path, environ)
	if err != nil {
		t.Fatal(err)
	}
	a := &applied{}
	var logs testlog.Buffer
	return &Reloader{Path: path, Environ: environ, Store: NewStore(c), Apply: a.apply, Log: slog.New(slog.NewJSONHandler(&logs, nil))}, a, &logs
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReloadAppliesAValidEdit(t *testing.T) {
	t.Parallel()
	r, a, logs := newReloader(t, minimal)
	write(t, r.Path, minimal+"enabled: false\npassword: {ttl: 10m}\n")
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := r.Store.Current()
	if c.Enabled || c.Password.TTL != 10*time.Minute {
		t.Errorf("after reload enabled=%v ttl=%s, want false and 10m", c.Enabled, c.Password.TTL)
	}
	if len(a.configs) != 1 || a.configs[0] != c {
		t.Errorf("the plugin was not handed the new config")
	}
	for _, want := range []string{`"result":"applied"`, `"changed":["enabled","password"]`, "test warning"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if err := r.Store.Healthy(context.Background()); err != nil {
		t.Errorf("Healthy after a good reload: %v", err)
	}
}

func TestReloadKeepsTheLastGoodConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		refuse  error
		wantErr string
	}{
		{"invalid value", minimal + "password: {ttl: 1ms}", nil, "password.ttl"},
		{"unknown key", minimal + "enabeld: false", nil, "enabeld"},
		{"not YAML", "webhook: [", nil, "parse config YAML"},
		{"plugin refuses", minimal + "enabled: false", errors.New("invalid argument: smtp.host: required"), "plugin refused its sections: invalid argument: smtp.host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, a, logs := newReloader(t, minimal)
			before := r.Store.Current()
			a.refuse = tt.refuse
			write(t, r.Path, tt.body)
			err := r.Reload(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Reload = %v, want an error naming %q", err, tt.wantErr)
			}
			if r.Store.Current() != before {
				t.Errorf("a refused reload changed the config in effect")
			}
			if h := r.Store.Healthy(context.Background()); h == nil || !strings.Contains(h.Error(), tt.wantErr) {
				t.Errorf("Healthy = %v, want the refusal", h)
			}
			if !strings.Contains(logs.String(), `"result":"refused"`) {
				t.Errorf("the refusal was not logged:\n%s", logs)
			}
			// Fixing the file clears the readiness error.
			a.refuse = nil
			write(t, r.Path, minimal+"enabled: false\n")
			if err := r.Reload(context.Background()); err != nil || r.Store.Healthy(context.Background()) != nil {
				t.Errorf("a good reload after a bad one: %v, healthy %v", err, r.Store.Healthy(context.Background()))
			}
		})
	}
}

func TestReloadKeepsRestartOnlyKeysAndEnvironment(t *testing.T) {
	t.Parallel()
	r, _, logs := newReloader(t, minimal, "GATEWAY_PASSWORD__TTL=20m")
	write(t, r.Path, minimal+"listen: 127.0.0.1:9999\nplugin: {path: /elsewhere}\npassword: {ttl: 5m}\nenabled: false\n")
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := r.Store.Current()
	if c.Listen != "127.0.0.1:8080" || c.Plugin.Path != "bin/gateway-email-plugin" {
		t.Errorf("listen=%s plugin.path=%s changed without a restart", c.Listen, c.Plugin.Path)
	}
	if c.Password.TTL != 20*time.Minute || c.Enabled {
		t.Errorf("ttl=%s enabled=%v, want the environment's 20m to win and the file's enabled: false", c.Password.TTL, c.Enabled)
	}
	for _, key := range []string{`"key":"listen"`, `"key":"plugin.path"`, `"restart_needed":["listen","plugin.path"]`} {
		if !strings.Contains(logs.String(), key) {
			t.Errorf("no warning for %s:\n%s", key, logs)
		}
	}
	if strings.Contains(logs.String(), "0123456789abcdef") {
		t.Errorf("a secret reached the log")
	}
	if got := r.Store.RestartNeeded(); !slices.Equal(got, []string{"listen", "plugin.path"}) {
		t.Errorf("RestartNeeded = %q, want listen and plugin.path", got)
	}

	// A refused edit leaves the list as it was; an edit back to the running
	// values clears it.
	write(t, r.Path, minimal+"listen: 127.0.0.1:9999\ntimeouts: {smtp: 0s}\n")
	if err := r.Reload(context.Background()); err == nil {
		t.Fatal("an invalid edit was accepted")
	}
	if got := r.Store.RestartNeeded(); !slices.Equal(got, []string{"listen", "plugin.path"}) {
		t.Errorf("RestartNeeded after a refused reload = %q, want it unchanged", got)
	}
	write(t, r.Path, minimal)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.Store.RestartNeeded(); len(got) != 0 {
		t.Errorf("RestartNeeded after the file went back = %q, want none", got)
	}
}

// Every restart-only key names a field of Config, so the reload can keep
// its running value.
func TestRestartOnlyKeysAreConfigKeys(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range restartOnly {
		if _, ok := c.Value(key); !ok {
			t.Errorf("restart-only key %s is not a key of Config", key)
		}
	}
	for key, want := range map[string]any{"listen": "127.0.0.1:8080", "kratos.verify_wiring": true, "timeouts.kratos": 3 * time.Second} {
		if got, ok := c.Value(key); !ok || got != want {
			t.Errorf("Value(%s) = %v, %t; want %v", key, got, ok, want)
		}
	}
	for _, key := range []string{"smtp.host", "kratos.admin_url.x", "nope"} {
		if got, ok := c.Value(key); ok {
			t.Errorf("Value(%s) = %v, want no value", key, got)
		}
	}
}

// Watch reloads on a write and on an editor's rename-over.
func TestWatchFollowsTheFile(t *testing.T) {
	t.Parallel()
	r, _, _ := newReloader(t, minimal)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx) }()
	time.Sleep(50 * time.Millisecond) // let the watch start

	write(t, r.Path, minimal+"enabled: false\n")
	waitFor(t, func() bool { return !r.Store.Current().Enabled }, "a written edit")

	tmp := r.Path + ".tmp"
	write(t, tmp, minimal+"enabled: true\n")
	if err := os.Rename(tmp, r.Path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return r.Store.Current().Enabled }, "a renamed-over edit")

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("the config did not follow %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
