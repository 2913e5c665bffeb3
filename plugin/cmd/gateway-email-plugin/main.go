// Command gateway-email-plugin is the email gateway plugin process. The
// gateway host launches it; it is not meant to be run by hand.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/kratos-email-gateway/kratos-email-gateway/plugin"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

func main() {
	logger := hclog.New(&hclog.LoggerOptions{Name: "gateway-email-plugin", Output: os.Stderr, JSONFormat: true})
	sdk.Serve(plugin.New(), sdk.WithLogger(logger))
}
