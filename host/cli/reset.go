package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/bulkreset"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/outbox"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/pluginhost"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
)

// errSomeFailed makes the exit code say that identities failed; the
// summary above it already named them.
var errSomeFailed = errors.New("some identities were not reset")

// reset issues temporary passwords as an admin action. It replaces the
// password at once and ends the identity's sessions: what an admin wants
// after a breach, unlike a self-service recovery.
func reset(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("reset", flag.ContinueOnError)
	var (
		path     = fs.String("config", "", "path of gateway.yaml")
		id       = fs.String("id", "", "reset one identity by id")
		email    = fs.String("email", "", "reset one identity by its email (login identifier)")
		file     = fs.String("file", "", "reset the identity ids listed in this file, one per line")
		all      = fs.Bool("all", false, "reset every identity")
		dryRun   = fs.Bool("dry-run", false, "list what would be reset; change nothing")
		conc     = fs.Int("concurrency", 4, "identities reset at the same time (Kratos hashes each password: mind its CPU)")
		runID    = fs.String("run-id", "", "resume an interrupted run: identities it already reset are skipped (default: derived from the selection and the day)")
		pageSize = fs.Int("page-size", 250, "admin API page size for --all")
	)
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	chosen := 0
	for _, set := range []bool{*id != "", *email != "", *file != "", *all} {
		if set {
			chosen++
		}
	}
	if *path == "" || chosen != 1 || *conc < 1 || *conc > 64 {
		fmt.Fprintln(env.Stderr, "reset: --config FILE and exactly one of --id, --email, --file, --all are required; --concurrency is 1..64")
		return errUsage
	}
	cfg, err := config.Load(*path, env.Environ)
	if err != nil {
		return err
	}
	sel := bulkreset.Selection{ID: *id, Email: *email, All: *all, PageSize: *pageSize}
	if *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("read identity file: %w", err)
		}
		defer f.Close()
		sel.File = f
	}
	if *runID == "" {
		*runID = bulkreset.RunID(sel, *file, time.Now())
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	kratos := kratosadmin.New(cfg.Kratos.AdminURL, kratosHTTP(cfg))
	var resets bulkreset.Resetter
	if !*dryRun {
		proc, _, err := pluginhost.Launch(ctx, launchConfig(cfg, env.Environ, io.Discard), cfg.PluginConfig)
		if err != nil {
			return err
		}
		defer proc.Kill()
		// The audit log goes to stderr; progress and summary to stdout.
		log := newLogger(cfg, logLevel(cfg), env.Stderr)
		var opts []recovery.Option
		if cfg.Queue.PostgresDSN != "" {
			// Hosts sharing an outbox may be resetting these identities
			// right now: each reset waits for the identity's lock.
			ob, err := outbox.Open(ctx, cfg.Queue.PostgresDSN, outbox.Options{Workers: 1, MaxAttempts: 1, Retention: cfg.Queue.Retention,
				JobTimeout: cfg.Queue.JobTimeout}, log)
			if err != nil {
				return fmt.Errorf("queue.postgres_dsn: %w", err)
			}
			defer func() { _ = ob.Stop(context.Background()) }()
			opts = append(opts, recovery.WithLocker(ob))
		}
		svc := recovery.New(kratos, proc, time.Now, log, opts...)
		defer svc.Wait()
		resets = svc
	}
	mode := "resetting"
	if *dryRun {
		mode = "dry run, nothing changes"
	}
	fmt.Fprintf(env.Stdout, "run %s (%s); rerun with --run-id %s to resume after an interruption\n", *runID, mode, *runID)

	progress := progressPrinter(env.Stdout)
	sum, err := bulkreset.Run(ctx, kratos, resets, sel, bulkreset.Options{
		RunID:       *runID,
		DryRun:      *dryRun,
		Concurrency: *conc,
		Policy:      recovery.NewPolicy(cfg, recovery.Admin),
		Progress:    progress,
	})
	printSummary(env.Stdout, sum, *dryRun)
	if err != nil {
		return err
	}
	if len(sum.Failed()) > 0 {
		return errSomeFailed
	}
	return nil
}

// progressPrinter draws a bar on a terminal and writes plain lines
// elsewhere (logs, CI), where a carriage return would garble the output.
func progressPrinter(w io.Writer) func(int, int, bulkreset.Result) {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return func(done, total int, _ bulkreset.Result) {
				const width = 30
				filled := width * done / max(total, 1)
				fmt.Fprintf(w, "\r[%s%s] %d/%d", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done, total)
				if done == total {
					fmt.Fprintln(w)
				}
			}
		}
	}
	return func(done, total int, r bulkreset.Result) {
		line := fmt.Sprintf("%d/%d %s %s", done, total, r.IdentityID, r.Outcome)
		if r.Reason != "" {
			line += ": " + r.Reason
		}
		fmt.Fprintln(w, line)
	}
}

func printSummary(w io.Writer, sum bulkreset.Summary, dryRun bool) {
	if dryRun {
		fmt.Fprintf(w, "summary: %d identities: %d would be reset, %d failed\n",
			len(sum.Results), sum.Count("would-reset"), sum.Count("failed"))
	} else {
		fmt.Fprintf(w, "summary: %d identities: %d reset, %d skipped, %d failed\n",
			len(sum.Results), sum.Count("reset"), sum.Count("skipped"), sum.Count("failed"))
	}
	for _, r := range sum.Skipped() {
		fmt.Fprintf(w, "  skipped %s: %s\n", r.IdentityID, r.Reason)
	}
	for _, r := range sum.Failed() {
		fmt.Fprintf(w, "  failed  %s: %s\n", r.IdentityID, r.Reason)
	}
}
