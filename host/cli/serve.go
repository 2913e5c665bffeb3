package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/demoui"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/httpapi"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratospublic"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/listen"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/metrics"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/notify"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/outbox"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/pluginhost"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/wiring"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// serve runs the host until SIGINT or SIGTERM, in named steps: load the
// config, start the plugin, build the services, open the listeners, start
// the wiring check, watch the config, wait, shut down.
func serve(ctx context.Context, env Env, args []string) error {
	path, cfg, err := loadConfig("serve", env, args)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg))
	log := newLogger(cfg, level, env.Stderr)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	launch := launchConfig(cfg, env.Environ, env.Stderr)
	plugin, err := startPlugin(ctx, cfg, launch, log)
	if err != nil {
		return err
	}
	defer plugin.Close()
	ob, err := openOutbox(ctx, cfg, log)
	if err != nil {
		return err
	}
	svc := buildServices(cfg, plugin, logging{host: log, level: level, plugin: launch.Logger}, ob)
	// The mailed_at marks still being written finish before the process
	// exits, each bounded by timeouts.kratos.
	defer svc.resets.Wait()
	// So do the notices still queued, within notify.DrainTimeout, once the
	// servers stopped taking requests (defers run last in, first out) and
	// while the plugin still runs.
	defer svc.drainNotices()
	if ob != nil {
		// Not ctx: River stops hard when its context ends; stopOutbox
		// stops it gracefully after the servers.
		if err := ob.Start(context.WithoutCancel(ctx), outbox.Deps{Config: svc.store.Current, Deliver: svc.deliver, Observer: svc.metrics,
			Holding: svc.hook.Checking, Notices: svc.notices}); err != nil {
			return fmt.Errorf("start the outbox's workers: %w", err)
		}
		// The jobs under way finish (or go back to the queue) once the
		// servers stopped taking messages, while the plugin still runs.
		defer stopOutbox(ob, log)
		if cfg.Admin.Listen != "" {
			if svc.queueUI, err = startQueueUI(ctx, ob, svc.store.Current, log); err != nil {
				return err
			}
		}
	}
	servers, err := openServers(cfg, svc, log)
	if err != nil {
		return err
	}
	errc := startServers(servers, log)
	svc.startWiringCheck(ctx)
	watchConfig(ctx, svc.reloader(path, env.Environ))
	log.Info("gateway serving", "listen", servers[0].ln.Addr().String(), "tls", servers[0].tls, "enabled", cfg.Enabled, "outbox", ob != nil, "plugin_pid", plugin.Pid())

	if err := wait(ctx, errc); err != nil {
		return err
	}
	return shutdown(servers, log)
}

// openOutbox opens the durable outbox when queue.postgres_dsn is set, after
// migrating its schema with queue.migrate: auto; nil without it.
func openOutbox(ctx context.Context, cfg *config.Config, log *slog.Logger) (*outbox.Outbox, error) {
	q := cfg.Queue
	if q.PostgresDSN == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if q.Migrate == "auto" {
		applied, err := outbox.Migrate(ctx, q.PostgresDSN, log)
		if err != nil {
			return nil, fmt.Errorf("queue.migrate: auto: %w", err)
		}
		if len(applied) > 0 {
			log.Info("outbox schema migrated", "versions", applied)
		}
	}
	ob, err := outbox.Open(ctx, q.PostgresDSN, outbox.Options{Workers: q.Workers, RecoveryWorkers: q.RecoveryWorkers, MaxAttempts: q.MaxAttempts, Retention: q.Retention, JobTimeout: q.JobTimeout}, log)
	if err != nil {
		return nil, fmt.Errorf("queue.postgres_dsn: %w", err)
	}
	return ob, nil
}

// stopOutbox lets the jobs under way finish within 15 s.
func stopOutbox(ob *outbox.Outbox, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := ob.Stop(ctx); err != nil {
		log.Warn("outbox jobs cancelled at shutdown; they run again from the queue", "error", err.Error())
	}
}

// startPlugin launches the plugin configured with cfg's sections, under
// pluginhost's supervision, and logs the security warnings of the config
// and of the plugin.
func startPlugin(ctx context.Context, cfg *config.Config, launch sdk.LaunchConfig, log *slog.Logger) (*pluginhost.Host, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	plugin, warnings, err := pluginhost.Start(ctx, launch, cfg.PluginConfig, log)
	if err != nil {
		return nil, err
	}
	for _, w := range append(cfg.Warnings(), warnings...) {
		log.Warn("security warning", "warning", w)
	}
	return plugin, nil
}

// logging is where serve logs: the host's logger, its level (log.level,
// which a reload changes) and the plugin's logger.
type logging struct {
	host   *slog.Logger
	level  *slog.LevelVar
	plugin hclog.Logger
}

// servedPlugin is what the services use of the plugin: pluginhost.Host, or
// a fake in tests.
type servedPlugin interface {
	sdk.Gateway
	Restarts() int
}

// services are what serve builds from the config. Each part reads the
// config snapshot per call (store), or follow rebuilds it when a reload
// changes its keys; the keys neither can apply are config's restart-only
// ones.
type services struct {
	store    *config.Store
	plugin   servedPlugin
	metrics  *metrics.Metrics
	kratos   *kratosadmin.Client
	sessions *kratospublic.Client
	resets   *recovery.Service
	deliver  *courier.Deliverer
	notices  *notify.Notifier
	hook     *wiring.Status
	server   *httpapi.Server
	// demo is the demo UI, nil without demo_ui.listen.
	demo *swapHandler
	// queueUI is River's UI of the outbox behind admin.api_key, nil
	// without the outbox or admin.listen.
	queueUI http.Handler
	logs    logging
}

// buildServices builds the services on a started plugin; ob is the outbox,
// nil without queue.postgres_dsn.
func buildServices(cfg *config.Config, plugin servedPlugin, logs logging, ob *outbox.Outbox) *services {
	m := metrics.New(plugin.Restarts)
	s := &services{
		store:    config.NewStore(cfg),
		plugin:   plugin,
		metrics:  m,
		kratos:   kratosadmin.New(cfg.Kratos.AdminURL, kratosHTTP(cfg)),
		sessions: kratospublic.New(cfg.Kratos.PublicURL, kratosHTTP(cfg)),
		logs:     logs,
	}
	// The one observer around the plugin: every delivery's SMTP stages go
	// to the metrics.
	gw := m.Observe(plugin)
	nd := notify.Deps{Config: s.store.Current, Kratos: s.kratos, Plugin: gw, Observer: m, Log: logs.host}
	if ob != nil {
		// Notices go to the outbox too, and outlive this host.
		nd.Durable = ob
	}
	s.notices = notify.New(nd)
	opts := []recovery.Option{recovery.WithNotices(s.notices)}
	if ob != nil {
		// Hosts sharing the outbox serialise each identity's work.
		opts = append(opts, recovery.WithLocker(ob))
	}
	s.resets = recovery.New(s.kratos, gw, time.Now, logs.host, opts...)
	// Until the wiring check proved that Kratos calls the migration hook,
	// self-service recoveries get Kratos's own message (package wiring).
	s.hook = wiring.NewStatus("")
	if cfg.Kratos.VerifyWiring {
		s.hook = wiring.NewStatus("not checked yet")
	}
	var deliverOpts []courier.Option
	if ob != nil {
		deliverOpts = append(deliverOpts, courier.ForOutbox())
	}
	s.deliver = courier.New(s.resets, gw, m, s.hook, logs.host, deliverOpts...)
	if cfg.DemoUI.Listen != "" {
		s.demo = &swapHandler{}
		s.demo.set(demoui.New(demoConfig(cfg), logs.host))
	}
	deps := httpapi.Deps{
		Config:        s.store.Current,
		Reset:         s.resets,
		Send:          gw,
		Sessions:      s.sessions,
		Ready:         s.checks(ob),
		Now:           time.Now,
		Log:           logs.host,
		Observer:      m,
		Metrics:       m.Handler(),
		Wiring:        s.hook,
		RestartNeeded: s.store.RestartNeeded,
		Courier:       s.deliver,
	}
	if ob != nil {
		deps.Outbox = ob
	}
	s.server = httpapi.New(deps)
	return s
}

// drainNotices lets the notices still queued or waiting for a retry go out
// within notify.DrainTimeout; those it could not send are logged.
func (s *services) drainNotices() {
	ctx, cancel := context.WithTimeout(context.Background(), notify.DrainTimeout)
	defer cancel()
	if err := s.notices.Drain(ctx); err != nil {
		s.logs.host.Warn("notices lost at shutdown", "event", "notice", "error", err.Error())
	}
}

// checks are readiness's: the plugin is configured, Kratos's admin API is
// ready, the config file's last reload was accepted, and, with the outbox,
// its database answers; a message undelivered longer than
// queue.ready_max_age makes the host degraded.
func (s *services) checks(ob *outbox.Outbox) []httpapi.Check {
	checks := []httpapi.Check{
		{Name: "plugin", Run: func(ctx context.Context) error {
			h, err := s.plugin.Health(ctx, &sdk.HealthRequest{})
			if err != nil {
				return err
			}
			if !h.Configured {
				return fmt.Errorf("plugin not configured: %s", h.Detail)
			}
			return nil
		}},
		{Name: "kratos", Run: s.kratos.Ready},
		{Name: "config", Run: s.store.Healthy},
	}
	if ob != nil {
		checks = append(checks, httpapi.Check{Name: "queue", Run: ob.Ping},
			httpapi.Check{Name: "queue_backlog", Degrades: true, Run: func(ctx context.Context) error {
				return ob.Backlog(ctx, s.store.Current().Queue.ReadyMaxAge)
			}})
	}
	return checks
}

// reloader reloads the config file at path: the plugin gets its sections
// first (a refusal keeps the running config), then follow.
func (s *services) reloader(path string, environ []string) *config.Reloader {
	return &config.Reloader{
		Path:    path,
		Environ: environ,
		Store:   s.store,
		Apply: func(ctx context.Context, c *config.Config) ([]string, error) {
			resp, err := s.plugin.Configure(ctx, &sdk.ConfigureRequest{Config: c.PluginConfig})
			if err != nil {
				return nil, err
			}
			return resp.Warnings, nil
		},
		Observe: s.metrics.ConfigReload,
		Applied: s.follow,
		Log:     s.logs.host,
	}
}

// follow makes a reload reach what was built from the config at start:
// the Kratos clients (kratos.admin_url, kratos.public_url,
// timeouts.kratos), the demo UI (demo_ui.* and kratos.public_url) and the
// log level of the host and of the plugin's lines. The wiring check proves
// the hook again when what it proved changed.
func (s *services) follow(prev, next *config.Config) {
	if prev.Kratos.AdminURL != next.Kratos.AdminURL || prev.Timeouts.Kratos != next.Timeouts.Kratos {
		s.kratos.Retarget(next.Kratos.AdminURL, kratosHTTP(next))
	}
	if prev.Kratos.PublicURL != next.Kratos.PublicURL || prev.Timeouts.Kratos != next.Timeouts.Kratos {
		s.sessions.Retarget(next.Kratos.PublicURL, kratosHTTP(next))
	}
	if s.demo != nil && demoConfig(prev) != demoConfig(next) {
		s.demo.set(demoui.New(demoConfig(next), s.logs.host))
	}
	s.logs.level.Set(logLevel(next))
	s.logs.plugin.SetLevel(hclog.LevelFromString(next.Log.Level))
	if next.Kratos.VerifyWiring && wiringChanged(prev, next) {
		s.hook.Recheck("re-checking after a config change")
	}
}

// startWiringCheck proves, with kratos.verify_wiring, that Kratos calls
// the password migration hook: in the background, at once, on
// wiringSchedule and after a reload that changed what it proved.
func (s *services) startWiringCheck(ctx context.Context) {
	if !s.store.Current().Kratos.VerifyWiring {
		s.metrics.Wiring(true)
		return
	}
	publicHTTP := &http.Client{Timeout: 10 * time.Second}
	go s.hook.Run(ctx, func(ctx context.Context) wiring.Report {
		c := s.store.Current()
		return (&wiring.Checker{Admin: s.kratos, PublicURL: c.Kratos.PublicURL, HTTP: publicHTTP, Keys: c.Keyring, Log: s.logs.host}).VerifyHook(ctx)
	}, wiringSchedule, s.logs.host, s.metrics.Wiring)
}

// watchConfig reloads the config whenever its file changes and on SIGHUP,
// until ctx ends.
func watchConfig(ctx context.Context, r *config.Reloader) {
	go func() {
		if err := r.Watch(ctx); err != nil {
			r.Log.Error("config file is not watched; reload with SIGHUP", "error", err.Error())
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = r.Reload(ctx)
			}
		}
	}()
}

// startServers serves every listener in the background; the channel gets
// the servers' errors.
func startServers(servers []server, log *slog.Logger) <-chan error {
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.Serve(s.ln) }()
		if s.key != "listen" {
			log.Info(s.what+" serving", "key", s.key, "listen", s.ln.Addr().String(), "tls", s.tls)
		}
	}
	return errc
}

// wait returns when ctx ends (SIGINT, SIGTERM), or with the error of a
// server that stopped.
func wait(ctx context.Context, errc <-chan error) error {
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
		return nil
	}
}

// shutdown stops the servers, letting the requests under way finish within
// 15 s.
func shutdown(servers []server, log *slog.Logger) error {
	log.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	return nil
}

// kratosHTTP is the HTTP client of the calls to Kratos's APIs.
func kratosHTTP(cfg *config.Config) *http.Client {
	return &http.Client{Timeout: cfg.Timeouts.Kratos}
}

// demoConfig is the demo UI's part of the config.
func demoConfig(cfg *config.Config) demoui.Config {
	return demoui.Config{
		KratosPublicURL:  cfg.Kratos.PublicURL,
		KratosBrowserURL: cfg.DemoUI.KratosBrowserURL,
		MailpitURL:       cfg.DemoUI.MailpitURL,
	}
}

// swapHandler serves the handler set last.
type swapHandler struct {
	h atomic.Pointer[http.Handler]
}

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// wiringSchedule retries a failed wiring check soon (Kratos often starts
// after the gateway) and less often the longer it fails; a passed check is
// repeated hourly, since kratos.yml can change under a running gateway.
var wiringSchedule = wiring.Schedule{First: 5 * time.Second, Max: 5 * time.Minute, Every: time.Hour}

// wiringChanged reports whether a reload changed what the wiring check
// proved: the key Kratos must send, the keys the hook's answer depends on,
// or where Kratos is.
func wiringChanged(prev, next *config.Config) bool {
	return prev.Webhook.APIKey != next.Webhook.APIKey || !slices.Equal(prev.Secrets.Cipher, next.Secrets.Cipher) ||
		prev.Kratos.AdminURL != next.Kratos.AdminURL || prev.Kratos.PublicURL != next.Kratos.PublicURL
}

// server is one of the host's HTTP servers on its bound listener.
type server struct {
	*http.Server
	ln net.Listener
	// key is the config key of addr; what names the server in the log.
	key, addr, what string
	// plain servers never serve TLS (the demo UI); tls says whether this
	// one does.
	plain, tls bool
}

// openServers binds every configured listener through one listen.Group:
// listen (courier, hooks, health, metrics, and /gate unless gate.listen is
// set), gate.listen, admin.listen and demo_ui.listen. With tls.cert_file
// all but the demo UI serve HTTPS. A listener that cannot bind closes the
// ones already bound, and the error names its key. The first server is
// listen's.
func openServers(cfg *config.Config, svc *services, log *slog.Logger) ([]server, error) {
	var tlsConf *tls.Config
	if cfg.TLS.Enabled() {
		cert, err := listen.LoadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile, log)
		if err != nil {
			return nil, err
		}
		tlsConf = cert.Config()
	}
	// Handshake failures and the like, in the host's log format.
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	webhooks := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, IdleTimeout: 120 * time.Second}
	}

	api := svc.server.Handler()
	main := server{key: "listen", addr: cfg.Listen, what: "gateway", Server: webhooks(api)}
	specs := []server{main}
	if cfg.Gate.Listen != "" {
		specs[0].Handler = withoutGate(api)
		specs = append(specs, server{key: "gate.listen", addr: cfg.Gate.Listen, what: "gate", Server: webhooks(gateOnly(api))})
	}
	if cfg.Admin.Listen != "" {
		specs = append(specs, server{key: "admin.listen", addr: cfg.Admin.Listen, what: "admin API", Server: &http.Server{
			Handler:           svc.adminHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
		}})
	}
	if cfg.DemoUI.Listen != "" {
		specs = append(specs, server{key: "demo_ui.listen", addr: cfg.DemoUI.Listen, what: "demo UI", plain: true, Server: &http.Server{
			Handler:           svc.demo,
			ReadHeaderTimeout: 5 * time.Second,
		}})
	}

	var group listen.Group
	for i := range specs {
		s := &specs[i]
		var tc *tls.Config
		if !s.plain {
			tc = tlsConf
		}
		ln, err := group.Open(s.key, s.addr, tc)
		if err != nil {
			return nil, err
		}
		s.ln, s.tls, s.ErrorLog = ln, tc != nil, errorLog
		// The demo UI is a local toy; the others carry passwords, keys or
		// sessions.
		if w := listen.Warning(s.key, s.addr, s.tls); w != "" && !s.plain {
			log.Warn("security warning", "key", s.key, "listen", s.addr, "warning", w)
		}
	}
	return specs, nil
}

// withoutGate answers 404 for /gate: with gate.listen set, the gate is
// served on its own listener only.
func withoutGate(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/gate", http.NotFoundHandler())
	mux.Handle("/", h)
	return mux
}

// gateOnly serves /gate and the health probes of h, and 404 for anything
// else: the reverse proxy reaching it reaches neither Kratos's hooks nor
// the metrics.
func gateOnly(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, path := range []string{"/gate", "/health/alive", "/health/ready"} {
		mux.Handle(path, h)
	}
	return mux
}
