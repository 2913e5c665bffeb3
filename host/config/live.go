package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Store holds the config in effect. Handlers read one snapshot per request;
// a reload swaps in a whole new Config, never a half-updated one.
type Store struct {
	cur atomic.Pointer[Config]

	mu      sync.Mutex
	lastErr error
}

// NewStore starts with c in effect.
func NewStore(c *Config) *Store {
	s := &Store{}
	s.cur.Store(c)
	return s
}

// Current is the config in effect.
func (s *Store) Current() *Config { return s.cur.Load() }

// Healthy reports the last reload's failure, if the file currently holds a
// config that was refused; readiness shows it so an operator sees that the
// gateway runs on an older config than the file says.
func (s *Store) Healthy(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr != nil {
		return fmt.Errorf("the last config reload was refused, the previous config stays in effect: %w", s.lastErr)
	}
	return nil
}

func (s *Store) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
}

// restartOnly are keys a running host cannot change: the listener is bound
// and the plugin process was launched with them.
var restartOnly = []struct {
	key string
	get func(*Config) any
}{
	{"listen", func(c *Config) any { return c.Listen }},
	{"plugin.path", func(c *Config) any { return c.Plugin.Path }},
	{"plugin.sha256", func(c *Config) any { return c.Plugin.SHA256 }},
	{"admin.listen", func(c *Config) any { return c.Admin.Listen }},
	{"demo_ui.listen", func(c *Config) any { return c.DemoUI.Listen }},
	{"gate.listen", func(c *Config) any { return c.Gate.Listen }},
	// The paths are bound at start; the files' content reloads (host/listen).
	{"tls.cert_file", func(c *Config) any { return c.TLS.CertFile }},
	{"tls.key_file", func(c *Config) any { return c.TLS.KeyFile }},
	// The wiring check starts with serve or not at all.
	{"kratos.verify_wiring", func(c *Config) any { return c.Kratos.VerifyWiring }},
}

// Reloader re-reads the config file when it changes.
type Reloader struct {
	Path    string
	Environ []string
	Store   *Store
	// Apply hands an accepted config to the rest of the host (the plugin's
	// Configure) before it takes effect; an error refuses the reload. It
	// returns warnings to log.
	Apply func(ctx context.Context, c *Config) ([]string, error)
	// Observe, when set, is told each reload's result: applied or refused.
	Observe func(result string)
	// Applied, when set, is called after a reload took effect, with the
	// config before and after it.
	Applied func(prev, next *Config)
	Log     *slog.Logger
}

// Reload reads, validates and applies the file once. On any error the
// config in effect stays, and the error is logged and kept for readiness.
func (r *Reloader) Reload(ctx context.Context) error {
	err := r.reload(ctx)
	r.Store.setErr(err)
	if r.Observe != nil {
		result := "applied"
		if err != nil {
			result = "refused"
		}
		r.Observe(result)
	}
	if err != nil {
		r.Log.Error("config reload refused; the previous config stays in effect", "event", "config_reload", "result", "refused",
			"path", r.Path, "error", err.Error())
	}
	return err
}

func (r *Reloader) reload(ctx context.Context) error {
	next, err := Load(r.Path, r.Environ)
	if err != nil {
		return err
	}
	prev := r.Store.Current()
	for _, k := range restartOnly {
		if !reflect.DeepEqual(k.get(prev), k.get(next)) {
			r.Log.Warn("config key changed on disk applies only after a restart; keeping the running value", "key", k.key)
		}
	}
	next.Listen, next.Plugin, next.Admin.Listen, next.DemoUI.Listen = prev.Listen, prev.Plugin, prev.Admin.Listen, prev.DemoUI.Listen
	next.Gate.Listen, next.TLS, next.Kratos.VerifyWiring = prev.Gate.Listen, prev.TLS, prev.Kratos.VerifyWiring
	warnings, err := r.Apply(ctx, next)
	if err != nil {
		return fmt.Errorf("plugin refused its sections: %w", err)
	}
	r.Store.cur.Store(next)
	if r.Applied != nil {
		r.Applied(prev, next)
	}
	for _, w := range append(next.Warnings(), warnings...) {
		r.Log.Warn("security warning", "warning", w)
	}
	r.Log.Info("config reloaded", "event", "config_reload", "result", "applied", "path", r.Path, "changed", changedKeys(prev, next), "enabled", next.Enabled)
	return nil
}

// changedKeys names the top-level sections that differ, without values:
// some hold secrets.
func changedKeys(a, b *Config) []string {
	var out []string
	va, vb := reflect.ValueOf(*a), reflect.ValueOf(*b)
	for i := range va.NumField() {
		name := va.Type().Field(i).Tag.Get("koanf")
		if name == "-" {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	// The plugin's sections only the plugin reads; password is the host's too.
	var pa, pb map[string]json.RawMessage
	_ = json.Unmarshal(a.PluginConfig, &pa)
	_ = json.Unmarshal(b.PluginConfig, &pb)
	for _, sec := range []string{"smtp", "template"} {
		if !bytes.Equal(pa[sec], pb[sec]) {
			out = append(out, sec)
		}
	}
	return out
}

// Watch reloads whenever the file changes until ctx ends. It watches the
// folder, not the file: editors and Kubernetes replace a file by renaming
// another over it, which ends a watch on the old file.
func (r *Reloader) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	defer w.Close()
	abs, err := filepath.Abs(r.Path)
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("watch config folder %s: %w", filepath.Dir(abs), err)
	}
	// Edits arrive as bursts of events; settle before reading.
	const settle = 100 * time.Millisecond
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("config watcher closed")
			}
			if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				timer = time.After(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("config watcher closed")
			}
			r.Log.Error("config watcher error", "error", err.Error())
		case <-timer:
			timer = nil
			_ = r.Reload(ctx)
		}
	}
}
