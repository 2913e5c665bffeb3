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
	"slices"
	"strings"
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
	restart []string
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

// RestartNeeded lists the restart-only keys whose value in the file, as the
// last accepted reload read it, differs from the one running; readiness
// reports them until a restart (or an edit back) makes them agree.
func (s *Store) RestartNeeded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.restart)
}

func (s *Store) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
}

func (s *Store) setRestart(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restart = keys
}

// restartOnly are the keys a running host cannot change; a reload keeps
// their running values, and the log and readiness (Store.RestartNeeded)
// name each one the file changed. Every other key takes effect on reload:
// handlers read the snapshot per request, the plugin gets its sections
// through Configure, and serve rebuilds what it built from the config at
// start (host/cli). host/cli's TestEveryKeyTakesEffectOnReloadOrIsRestartOnly
// holds each key of configs/gateway.yaml to one of the two.
var restartOnly = []string{
	// The listeners are bound at start.
	"listen", "gate.listen", "admin.listen", "demo_ui.listen",
	// The paths are bound at start; the files' content reloads (host/listen).
	"tls.cert_file", "tls.key_file",
	// The plugin process was launched with them.
	"plugin.path", "plugin.sha256",
	// The wiring check starts with serve or not at all.
	"kratos.verify_wiring",
	// The log handlers, the host's and the plugin's, are built at start
	// (log.level follows a reload).
	"log.format",
	// The outbox's connections and River client are built at start
	// (queue.max_age and queue.ready_max_age follow a reload).
	"queue.postgres_dsn", "queue.migrate", "queue.workers", "queue.recovery_workers", "queue.max_attempts", "queue.retention", "queue.job_timeout",
}

// Value is the value of a host key by its dotted name, e.g.
// "kratos.admin_url"; false for a key the host does not hold (the plugin's
// smtp and template sections).
func (c *Config) Value(key string) (any, bool) {
	v, ok := field(c, key)
	if !ok {
		return nil, false
	}
	return v.Interface(), true
}

// field finds the struct field of a dotted key through the koanf tags.
func field(c *Config, key string) (reflect.Value, bool) {
	v := reflect.ValueOf(c).Elem()
	for name := range strings.SplitSeq(key, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		i := slices.IndexFunc(reflect.VisibleFields(v.Type()), func(f reflect.StructField) bool { return f.Tag.Get("koanf") == name })
		if i < 0 {
			return reflect.Value{}, false
		}
		v = v.Field(i)
	}
	return v, true
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
	var restart []string
	for _, key := range restartOnly {
		running, _ := field(prev, key)
		file, _ := field(next, key)
		if !reflect.DeepEqual(running.Interface(), file.Interface()) {
			r.Log.Warn("config key changed on disk applies only after a restart; keeping the running value", "key", key)
			restart = append(restart, key)
			file.Set(running)
		}
	}
	warnings, err := r.Apply(ctx, next)
	if err != nil {
		return fmt.Errorf("plugin refused its sections: %w", err)
	}
	r.Store.cur.Store(next)
	r.Store.setRestart(restart)
	if r.Applied != nil {
		r.Applied(prev, next)
	}
	for _, w := range append(next.Warnings(), warnings...) {
		r.Log.Warn("security warning", "warning", w)
	}
	attrs := []any{"event", "config_reload", "result", "applied", "path", r.Path, "changed", changedKeys(prev, next), "enabled", next.Enabled}
	if len(restart) > 0 {
		attrs = append(attrs, "restart_needed", restart)
	}
	r.Log.Info("config reloaded", attrs...)
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
