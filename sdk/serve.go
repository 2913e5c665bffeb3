package sdk

import (
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// Serve runs impl as a plugin process and returns when the host ends it. Call
// it from main; the host launches the binary, nobody runs it by hand.
//
// Logs written with logger go to stderr in go-plugin's JSON format, which the
// host folds into its own log with the right level.
func Serve(impl Gateway, logger hclog.Logger) {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginMap(impl),
		GRPCServer:      goplugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
