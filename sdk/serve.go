package sdk

import (
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
