package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/outbox"
)

// queueCommands are the subcommands of gateway queue: the durable
// outbox's schema and jobs, in the database of queue.postgres_dsn.
var queueCommands = map[string]func(context.Context, Env, []string) error{
	"migrate": queueMigrate,
	"list":    queueList,
	"retry":   func(ctx context.Context, env Env, args []string) error { return queueChange(ctx, env, "retry", args) },
	"discard": func(ctx context.Context, env Env, args []string) error { return queueChange(ctx, env, "discard", args) },
}

// errNoDSN: the queue commands work on the outbox's database only.
var errNoDSN = errors.New("queue.postgres_dsn: not set; set it in the config file, or GATEWAY_QUEUE__POSTGRES_DSN, " +
	"to the outbox's PostgreSQL database")

// queueConfig loads the config at path and insists on queue.postgres_dsn.
// Errors never hold the DSN, which may carry a password.
func queueConfig(env Env, path string) (*config.Config, *slog.Logger, error) {
	cfg, err := config.Load(path, env.Environ)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Queue.PostgresDSN == "" {
		return nil, nil, errNoDSN
	}
	// Logs, the audit lines included, go to stderr; the answers to stdout.
	return cfg, newLogger(cfg, logLevel(cfg), env.Stderr), nil
}

// openQueue opens the outbox of the config at path without starting its
// workers: River's client only reads and changes jobs.
func openQueue(ctx context.Context, env Env, path string) (*outbox.Outbox, func(), error) {
	cfg, log, err := queueConfig(env, path)
	if err != nil {
		return nil, nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q := cfg.Queue
	ob, err := outbox.Open(octx, q.PostgresDSN, outbox.Options{Workers: q.Workers, MaxAttempts: q.MaxAttempts, Retention: q.Retention}, log)
	if err != nil {
		return nil, nil, dsnProblem(err)
	}
	return ob, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ob.Stop(ctx)
	}, nil
}

// dsnProblem names queue.postgres_dsn in an error of the outbox's
// database, unless it does already.
func dsnProblem(err error) error {
	if strings.Contains(err.Error(), "queue.postgres_dsn") {
		return err
	}
	return fmt.Errorf("queue.postgres_dsn: %w", err)
}

// queueMigrate brings the outbox's schema (River's tables) up to this
// binary's: what queue.migrate: auto does at start.
func queueMigrate(ctx context.Context, env Env, args []string) error {
	path, err := configFlag("queue migrate", env, args)
	if err != nil {
		return err
	}
	cfg, log, err := queueConfig(env, path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	applied, err := outbox.Migrate(ctx, cfg.Queue.PostgresDSN, log)
	if err != nil {
		return dsnProblem(err)
	}
	if len(applied) == 0 {
		fmt.Fprintln(env.Stdout, "the queue's schema is up to date: nothing to migrate")
		return nil
	}
	versions := make([]string, len(applied))
	for i, v := range applied {
		versions[i] = strconv.Itoa(v)
	}
	fmt.Fprintf(env.Stdout, "migrated the queue's schema: applied River versions %s\n", strings.Join(versions, ", "))
	return nil
}

// queueList prints the outbox's jobs as a table, newest first.
func queueList(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("queue list", flag.ContinueOnError)
	path := fs.String("config", "", "path of gateway.yaml")
	states := fs.String("state", "", "list only jobs in these states, comma-separated: "+strings.Join(outbox.States(), ", ")+
		", or "+outbox.StateFailed+" (cancelled and discarded)")
	queue := fs.String("queue", "", "list only this queue's jobs: "+strings.Join(outbox.Queues(), ", "))
	limit := fs.Int("limit", 50, fmt.Sprintf("list at most this many jobs (1..%d)", outbox.MaxListLimit))
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	filter := outbox.Filter{Queue: *queue, Limit: *limit}
	for s := range strings.SplitSeq(*states, ",") {
		if s = strings.TrimSpace(s); s != "" {
			filter.States = append(filter.States, s)
		}
	}
	known := append(outbox.States(), outbox.StateFailed)
	bad := slices.ContainsFunc(filter.States, func(s string) bool { return !slices.Contains(known, s) })
	if *path == "" || fs.NArg() > 0 || bad || *limit < 1 || *limit > outbox.MaxListLimit ||
		(*queue != "" && !slices.Contains(outbox.Queues(), *queue)) {
		fmt.Fprintf(env.Stderr, "queue list: --config FILE is required; --state takes %s or %s; --queue is one of %s; --limit is 1..%d\n",
			strings.Join(outbox.States(), ", "), outbox.StateFailed, strings.Join(outbox.Queues(), ", "), outbox.MaxListLimit)
		return errUsage
	}
	ob, closeQueue, err := openQueue(ctx, env, *path)
	if err != nil {
		return err
	}
	defer closeQueue()
	jobs, err := ob.List(ctx, filter)
	if err != nil {
		return err
	}
	printJobs(env.Stdout, jobs)
	if len(jobs) == *limit {
		fmt.Fprintf(env.Stdout, "(the newest %d; --limit N lists more)\n", len(jobs))
	}
	return nil
}

// printJobs writes jobs as a table, times in UTC.
func printJobs(w io.Writer, jobs []outbox.Job) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no jobs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tQUEUE\tSTATE\tATTEMPT\tCREATED\tSCHEDULED\tTEMPLATE\tIDENTITY\tLAST ERROR")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Queue, j.State, j.Attempt, j.MaxAttempts,
			utc(j.CreatedAt), utc(j.ScheduledAt), orDash(j.TemplateType), orDash(j.IdentityID), orDash(lastError(j)))
	}
	_ = tw.Flush()
}

// lastError is the job's last error on one line, and who discarded it.
func lastError(j outbox.Job) string {
	msg := strings.Join(strings.Fields(j.LastError), " ")
	if !j.ByOperator {
		return msg
	}
	who := "discarded by an operator"
	if j.State == "running" {
		who = "an operator asked its worker to stop"
	}
	if msg == "" {
		return who
	}
	return who + "; before: " + msg
}

func utc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// queueChange retries or discards the job named by the one argument.
func queueChange(ctx context.Context, env Env, action string, args []string) error {
	fs := flag.NewFlagSet("queue "+action, flag.ContinueOnError)
	path := fs.String("config", "", "path of gateway.yaml")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	// The job's id may come before or after the flags.
	rest := fs.Args()
	if len(rest) > 0 {
		first := rest[0]
		if err := parseFlags(fs, env, rest[1:]); err != nil {
			return err
		}
		rest = append([]string{first}, fs.Args()...)
	}
	id, idErr := strconv.ParseInt(strings.Join(rest, " "), 10, 64)
	if *path == "" || len(rest) != 1 || idErr != nil || id < 1 {
		fmt.Fprintf(env.Stderr, "queue %s: --config FILE and one job ID (a number, from gateway queue list) are required\n", action)
		return errUsage
	}
	ob, closeQueue, err := openQueue(ctx, env, *path)
	if err != nil {
		return err
	}
	defer closeQueue()
	var ch outbox.Change
	if action == "retry" {
		ch, err = ob.Retry(ctx, id)
	} else {
		ch, err = ob.Discard(ctx, id)
	}
	if err != nil {
		return err
	}
	j := ch.Job
	what := fmt.Sprintf("job %d (%s, %s)", j.ID, j.Queue, orDash(j.TemplateType))
	switch {
	case action == "retry" && ch.Previous == j.State:
		fmt.Fprintf(env.Stdout, "%s is already %s: it runs as soon as a worker is free\n", what, j.State)
	case action == "retry":
		fmt.Fprintf(env.Stdout, "%s: %s → %s: it runs again now\n", what, ch.Previous, j.State)
	case j.State == "running":
		fmt.Fprintf(env.Stdout, "%s is running: its worker was asked to stop, and it ends cancelled "+
			"(a mail the SMTP server already took still arrives)\n", what)
	case ch.Previous == j.State:
		fmt.Fprintf(env.Stdout, "%s is already %s: nothing changed\n", what, j.State)
	default:
		fmt.Fprintf(env.Stdout, "%s: %s → %s: it will not run (gateway queue retry %d runs it after all)\n", what, ch.Previous, j.State, j.ID)
	}
	return nil
}
