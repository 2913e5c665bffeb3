package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/wiring"
)

// doctor proves, stage by stage like smtp test, that the live Kratos is
// wired to the running gateway, with a canary identity it always deletes.
func doctor(ctx context.Context, env Env, args []string) error {
	_, cfg, err := loadConfig("doctor", env, args)
	if err != nil {
		return err
	}
	log := newLogger(cfg, logLevel(cfg), env.Stderr)
	fmt.Fprintf(env.Stdout, "checking the wiring of Kratos (admin %s, public %s) to the gateway on %s\n", cfg.Kratos.AdminURL, cfg.Kratos.PublicURL, cfg.Listen)
	// The stages need Kratos to reach a running gateway: without one,
	// every stage would fail for the same reason.
	if err := gatewayAlive(ctx, cfg); err != nil {
		printStage(env, wiring.Stage{Name: "gateway serving", Err: err, Fix: "start gateway serve with this config first"})
		return fmt.Errorf("gateway serving: %w", err)
	}
	printStage(env, wiring.Stage{Name: "gateway serving"})
	checker := &wiring.Checker{
		Admin:     kratosadmin.New(cfg.Kratos.AdminURL, kratosHTTP(cfg)),
		PublicURL: cfg.Kratos.PublicURL,
		// A settings flow can take Kratos 10 s and more: it asks Have I
		// Been Pwned about the new password, which waits out its timeout
		// where Kratos has no internet access.
		HTTP:        &http.Client{Timeout: 30 * time.Second},
		Keys:        cfg.Keyring,
		Log:         log,
		Poll:        100 * time.Millisecond,
		CourierWait: 20 * time.Second,
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	rep := checker.Doctor(ctx)
	for _, s := range rep.Stages {
		printStage(env, s)
	}
	if err := rep.Err(); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "ok: Kratos is wired to the gateway; the canary identity is deleted")
	return nil
}

func printStage(env Env, s wiring.Stage) {
	switch {
	case s.Skipped:
		fmt.Fprintf(env.Stdout, "  %-8s %-24s (an earlier stage failed)\n", "skipped", s.Name)
	case s.Err != nil:
		fmt.Fprintf(env.Stdout, "  %-8s %-24s %s\n", "FAILED", s.Name, s.Err)
		if s.Fix != "" {
			fmt.Fprintf(env.Stdout, "  %-8s %-24s fix: %s\n", "", "", s.Fix)
		}
	default:
		fmt.Fprintf(env.Stdout, "  %-8s %-24s %s\n", "ok", s.Name, s.Duration.Round(time.Millisecond))
	}
}

// gatewayAlive asks the gateway's /health/alive on its listen address
// (loopback when it binds every interface). Only liveness is asked, so a
// certificate issued for another name is accepted here.
func gatewayAlive(ctx context.Context, cfg *config.Config) error {
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: 3 * time.Second}
	if cfg.TLS.Enabled() {
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // liveness only, nothing secret is sent
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+"/health/alive", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("no gateway answers on %s: %w", cfg.Listen, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health/alive on %s answered HTTP %d", cfg.Listen, resp.StatusCode)
	}
	return nil
}
