package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/demoui"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/httpapi"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratospublic"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/metrics"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/pluginhost"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/timing"
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
	for _, w := range warnings {
		log.Warn("security warning", "warning", w)
	}

	kratos := kratosadmin.New(cfg.Kratos.AdminURL, &http.Client{Timeout: cfg.Timeouts.Kratos})
	m := metrics.New(plugin.Restarts)
	// The timing wrappers let each courier message log where its time went.
	gw := timing.Gateway{Gateway: m.Observe(plugin)}
	resets := recovery.New(timing.Identities{Inner: kratos}, gw, time.Now, log)
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
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (listen): %w", cfg.Listen, err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 4)
	go func() { errc <- hs.Serve(ln) }()
	servers := []*http.Server{hs}
	if cfg.Admin.Listen != "" {
		admin := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second}
		adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s (admin.listen): %w", cfg.Admin.Listen, err)
		}
		go func() { errc <- admin.Serve(adminLn) }()
		servers = append(servers, admin)
		log.Info("admin API serving", "listen", adminLn.Addr().String())
	}
	if cfg.DemoUI.Listen != "" {
		ui := &http.Server{
			Handler: demoui.New(demoui.Config{
				KratosPublicURL:  cfg.Kratos.PublicURL,
				KratosBrowserURL: cfg.DemoUI.KratosBrowserURL,
				MailpitURL:       cfg.DemoUI.MailpitURL,
			}, log),
			ReadHeaderTimeout: 5 * time.Second,
		}
		uiLn, err := net.Listen("tcp", cfg.DemoUI.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s (demo_ui.listen): %w", cfg.DemoUI.Listen, err)
		}
		go func() { errc <- ui.Serve(uiLn) }()
		servers = append(servers, ui)
		log.Info("demo UI serving", "listen", uiLn.Addr().String())
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
	log.Info("gateway serving", "listen", ln.Addr().String(), "enabled", cfg.Enabled, "plugin_pid", plugin.Pid())

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	return nil
}
