package sdk

import (
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// Serve runs impl as a plugin process and returns when the host ends it. Call
// it from main; the host launches the binary, nobody runs it by hand. impl
// implements Gateway and any of the optional capabilities (Renderer,
// Prober) it offers.
func Serve(impl Gateway, opts ...ServeOption) {
	cfg := serveConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	go watchParent(os.Getppid, parentCheck, func() {
		if cfg.logger != nil {
			cfg.logger.Warn("the host that launched this plugin is gone; exiting")
		}
		os.Exit(1)
	})
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginMap(impl),
		GRPCServer:      goplugin.DefaultGRPCServer,
		Logger:          cfg.logger,
	})
}

// ServeOption tunes Serve.
type ServeOption func(*serveConfig)

type serveConfig struct {
	logger hclog.Logger
}

// WithLogger sets the logger of the plugin's go-plugin server. Logs written
// with it go to stderr in go-plugin's JSON format, which the host folds into
// its own log with the right level. Without it go-plugin logs to stderr in
// the same format at trace level, unnamed.
func WithLogger(logger hclog.Logger) ServeOption {
	return func(c *serveConfig) { c.logger = logger }
}

// parentCheck is how often a plugin looks whether its host still runs.
const parentCheck = time.Second

// watchParent calls orphaned once the process that launched this one is
// gone, which shows as a new parent (init or a subreaper). go-plugin notices
// a host that closes the connection, but not one killed with SIGKILL: its
// plugin would run on, holding SMTP connections and serving nobody.
func watchParent(getppid func() int, every time.Duration, orphaned func()) {
	parent := getppid()
	if parent <= 1 {
		// Launched by init itself: there is no host to outlive.
		return
	}
	for {
		time.Sleep(every)
		if getppid() != parent {
			orphaned()
			return
		}
	}
}
