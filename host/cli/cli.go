// Package cli is the gateway command line: it parses subcommands and wires the
// host's packages together for each of them.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Env is what a command may use from its process, passed in so tests can run
// commands side by side.
type Env struct {
	Args    []string // without the program name
	Environ []string
	Stdout  io.Writer
	Stderr  io.Writer
}

const usage = `gateway: the kratos-email-gateway host

Usage:
  gateway serve --config FILE          run the HTTP server Kratos calls
  gateway config check --config FILE   validate a config, plugin sections included
  gateway doctor --config FILE         prove Kratos's wiring to the running gateway, stage by
                                       stage, with a canary identity it deletes afterwards
  gateway reset --config FILE (--id ID | --email ADDR | --file FILE | --all) [--dry-run] [--concurrency N] [--run-id ID]
                                       issue temporary passwords as an admin: replaces the
                                       password at once and ends the identity's sessions
  gateway queue migrate --config FILE  create or update the durable outbox's tables (River's
                                       schema) in queue.postgres_dsn's database
  gateway queue list --config FILE [--state S,...] [--queue Q] [--limit N]
                                       list the outbox's jobs, newest first; --state failed
                                       lists the cancelled and discarded ones
  gateway queue retry --config FILE ID run a job that did not deliver again now
  gateway queue discard --config FILE ID
                                       make a job that has not delivered never run
  gateway smtp test --config FILE --to ADDR
                                       send a test mail and print each SMTP stage
  gateway template preview --config FILE [--locale L] [--part text|html|all] [--method code|link|admin] [--out FILE]
                                       render the temporary password mail with sample data
  gateway template preview --config FILE --notice password_changed|reset_void [--locale L] [--part text|html|all] [--out FILE]
                                       render a notice with sample data

Environment: GATEWAY_<KEY>, "__" between levels, overrides the file
(e.g. GATEWAY_SMTP__AUTHORIZATION_CODE, GATEWAY_WEBHOOK__API_KEY).
`

// Run executes one command and returns the process exit code.
func Run(ctx context.Context, env Env) int {
	args := env.Args
	switch {
	case len(args) >= 1 && args[0] == "serve":
		return exit(env, serve(ctx, env, args[1:]))
	case len(args) >= 2 && args[0] == "config" && args[1] == "check":
		return exit(env, checkConfig(ctx, env, args[2:]))
	case len(args) >= 1 && args[0] == "doctor":
		return exit(env, doctor(ctx, env, args[1:]))
	case len(args) >= 1 && args[0] == "reset":
		return exit(env, reset(ctx, env, args[1:]))
	case len(args) >= 2 && args[0] == "queue" && queueCommands[args[1]] != nil:
		return exit(env, queueCommands[args[1]](ctx, env, args[2:]))
	case len(args) >= 2 && args[0] == "smtp" && args[1] == "test":
		return exit(env, smtpTest(ctx, env, args[2:]))
	case len(args) >= 2 && args[0] == "template" && args[1] == "preview":
		return exit(env, templatePreview(ctx, env, args[2:]))
	case len(args) >= 1 && (args[0] == "help" || isHelp(args[0])),
		len(args) >= 2 && (args[0] == "config" || args[0] == "smtp" || args[0] == "template" || args[0] == "queue") && isHelp(args[1]):
		fmt.Fprint(env.Stdout, usage)
		return 0
	default:
		fmt.Fprint(env.Stderr, usage)
		return 2
	}
}

// errUsage marks errors already explained by the flag package.
var errUsage = errors.New("usage")

// errHelp marks a --help a command answered with its usage on stdout.
var errHelp = errors.New("help")

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

func exit(env Env, err error) int {
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(env.Stderr, "gateway: %v\n", err)
		return 1
	}
}

// configFlag parses the --config flag shared by every command.
func configFlag(name string, env Env, args []string) (string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("config", "", "path of gateway.yaml")
	if err := parseFlags(fs, env, args); err != nil {
		return "", err
	}
	if *path == "" {
		fmt.Fprintf(env.Stderr, "%s: --config FILE is required\n", name)
		return "", errUsage
	}
	return *path, nil
}

// loadConfig parses the --config flag of command name and loads the file.
func loadConfig(name string, env Env, args []string) (string, *config.Config, error) {
	path, err := configFlag(name, env, args)
	if err != nil {
		return "", nil, err
	}
	cfg, err := config.Load(path, env.Environ)
	if err != nil {
		return "", nil, err
	}
	return path, cfg, nil
}

// parseFlags parses a command's flags. -h or --help prints the command's
// usage on stdout and returns errHelp (exit 0); a wrong flag prints the
// problem and the usage on stderr and returns errUsage (exit 2).
func parseFlags(fs *flag.FlagSet, env Env, args []string) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage = func() {
		fmt.Fprintf(&out, "Usage:\n%s\n\nFlags:\n", commandUsage(fs.Name()))
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	fs.SetOutput(env.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = out.WriteTo(env.Stdout)
		return errHelp
	case err != nil:
		_, _ = out.WriteTo(env.Stderr)
		return errUsage
	}
	return nil
}

// commandUsage is the entry of the command name in usage, with the lines
// that continue it.
func commandUsage(name string) string {
	var entry []string
	lines := strings.Split(usage, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "  gateway "+name+" ") {
			continue
		}
		entry = append(entry, line)
		for _, more := range lines[i+1:] {
			if !strings.HasPrefix(more, "   ") {
				break
			}
			entry = append(entry, more)
		}
	}
	return strings.Join(entry, "\n")
}

// newLogger logs to w in log.format at level: logLevel(cfg), or a
// slog.LevelVar that follows reloads (serve).
func newLogger(cfg *config.Config, level slog.Leveler, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// logLevel is log.level as slog's level.
func logLevel(cfg *config.Config) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	return level
}

// launchConfig describes the plugin process. The plugin gets no environment
// of the host's (its secrets arrive through Configure) except the variables
// Go's TLS stack reads to find CA certificates.
func launchConfig(cfg *config.Config, environ []string, w io.Writer) sdk.LaunchConfig {
	var env []string
	for _, kv := range environ {
		if strings.HasPrefix(kv, "SSL_CERT_FILE=") || strings.HasPrefix(kv, "SSL_CERT_DIR=") {
			env = append(env, kv)
		}
	}
	return sdk.LaunchConfig{
		Path:   cfg.Plugin.Path,
		SHA256: cfg.Plugin.SHA256,
		Env:    env,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "plugin",
			Output:     w,
			JSONFormat: cfg.Log.Format != "text",
			Level:      hclog.LevelFromString(cfg.Log.Level),
		}),
	}
}

// checkConfig validates the host's keys, then lets the plugin validate its
// sections the way serve would.
func checkConfig(ctx context.Context, env Env, args []string) error {
	path, err := configFlag("config check", env, args)
	if err != nil {
		return err
	}
	_, proc, warnings, err := configuredPlugin(ctx, env, path)
	if err != nil {
		return err
	}
	defer proc.Kill()
	for _, w := range warnings {
		fmt.Fprintf(env.Stdout, "warning: %s\n", w)
	}
	fmt.Fprintf(env.Stdout, "%s: ok\n", path)
	return nil
}

// Main is the gateway binary's main, kept here so it stays testable.
func Main() {
	ctx := context.Background()
	os.Exit(Run(ctx, Env{Args: os.Args[1:], Environ: os.Environ(), Stdout: os.Stdout, Stderr: os.Stderr}))
}
