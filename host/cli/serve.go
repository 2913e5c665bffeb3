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
	"syscall"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/demoui"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/httpapi"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratospublic"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/listen"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/metrics"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/pluginhost"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/wiring"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// serve runs the host until SIGINT or SIGTERM.
func serve(ctx context.Context, env Env, args []string) error {
	path, err := configFlag("serve", env, args)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path, env.Environ)
	if err != nil {
		return err
	}
	log := newLogger(cfg, env.Stderr)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	plugin, warnings, err := pluginhost.Start(startCtx, launchConfig(cfg, env.Environ, env.Stderr), cfg.PluginConfig, log)
	cancel()
	if err != nil {
		return err
	}
	defer plugin.Close()
	for _, w := range append(cfg.Warnings(), warnings...) {
		log.Warn("security warning", "warning", w)
	}

	kratos := kratosadmin.New(cfg.Kratos.AdminURL, &http.Client{Timeout: cfg.Timeouts.Kratos})
	m := metrics.New(plugin.Restarts)
	// The one observer around the plugin: every delivery's SMTP stages go
	// to the metrics.
	gw := m.Observe(plugin)
	resets := recovery.New(kratos, gw, time.Now, log)
	// The mailed_at marks still being written finish before the process
	// exits, each bounded by timeouts.kratos.
	defer resets.Wait()
	checks := []httpapi.Check{
		{Name: "plugin", Run: func(ctx context.Context) error {
			h, err := plugin.Health(ctx, &sdk.HealthRequest{})
			if err != nil {
				return err
			}
			if !h.Configured {
				return fmt.Errorf("plugin not configured: %s", h.Detail)
			}
			return nil
		}},
		{Name: "kratos", Run: kratos.Ready},
	}
	store := config.NewStore(cfg)
	reloader := &config.Reloader{
		Path:    path,
		Environ: env.Environ,
		Store:   store,
		Apply: func(ctx context.Context, c *config.Config) ([]string, error) {
			resp, err := plugin.Configure(ctx, &sdk.ConfigureRequest{Config: c.PluginConfig})
			if err != nil {
				return nil, err
			}
			return resp.Warnings, nil
		},
		Observe: m.ConfigReload,
		Log:     log,
	}
	checks = append(checks, httpapi.Check{Name: "config", Run: store.Healthy})
	// Until the wiring check proved that Kratos calls the migration hook,
	// self-service recoveries get Kratos's own message (package wiring).
	hook := wiring.NewStatus("")
	if cfg.Kratos.VerifyWiring {
		hook = wiring.NewStatus("not checked yet")
		reloader.Applied = func(prev, next *config.Config) {
			if wiringChanged(prev, next) {
				hook.Recheck("re-checking after a config change")
			}
		}
	}
	srv := httpapi.New(httpapi.Deps{
		Config:   store.Current,
		Reset:    resets,
		Send:     gw,
		Sessions: kratospublic.New(cfg.Kratos.PublicURL, &http.Client{Timeout: cfg.Timeouts.Kratos}),
		Ready:    checks,
		Now:      time.Now,
		Log:      log,
		Observer: m,
		Metrics:  m.Handler(),
		Wiring:   hook,
	})

	servers, err := openServers(cfg, srv, log)
	if err != nil {
		return err
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.Serve(s.ln) }()
		if s.key != "listen" {
			log.Info(s.what+" serving", "key", s.key, "listen", s.ln.Addr().String(), "tls", s.tls)
		}
	}
	if cfg.Kratos.VerifyWiring {
		publicHTTP := &http.Client{Timeout: 10 * time.Second}
		go hook.Run(ctx, func(ctx context.Context) wiring.Report {
			c := store.Current()
			return (&wiring.Checker{Admin: kratos, PublicURL: c.Kratos.PublicURL, HTTP: publicHTTP, Keys: c.Keyring, Log: log}).VerifyHook(ctx)
		}, wiringSchedule, log, m.Wiring)
	} else {
		m.Wiring(true)
	}
	go func() {
		if err := reloader.Watch(ctx); err != nil {
			log.Error("config file is not watched; reload with SIGHUP", "error", err.Error())
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = reloader.Reload(ctx)
			}
		}
	}()
	log.Info("gateway serving", "listen", servers[0].ln.Addr().String(), "tls", servers[0].tls, "enabled", cfg.Enabled, "plugin_pid", plugin.Pid())

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	return nil
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
func openServers(cfg *config.Config, srv *httpapi.Server, log *slog.Logger) ([]server, error) {
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

	api := srv.Handler()
	main := server{key: "listen", addr: cfg.Listen, what: "gateway", Server: webhooks(api)}
	specs := []server{main}
	if cfg.Gate.Listen != "" {
		specs[0].Handler = withoutGate(api)
		specs = append(specs, server{key: "gate.listen", addr: cfg.Gate.Listen, what: "gate", Server: webhooks(gateOnly(api))})
	}
	if cfg.Admin.Listen != "" {
		specs = append(specs, server{key: "admin.listen", addr: cfg.Admin.Listen, what: "admin API", Server: &http.Server{
			Handler:           srv.AdminHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
		}})
	}
	if cfg.DemoUI.Listen != "" {
		specs = append(specs, server{key: "demo_ui.listen", addr: cfg.DemoUI.Listen, what: "demo UI", plain: true, Server: &http.Server{
			Handler: demoui.New(demoui.Config{
				KratosPublicURL:  cfg.Kratos.PublicURL,
				KratosBrowserURL: cfg.DemoUI.KratosBrowserURL,
				MailpitURL:       cfg.DemoUI.MailpitURL,
			}, log),
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
