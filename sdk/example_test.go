package sdk_test

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

// A plugin's main is one call: Serve runs the implementation until the host
// ends the process. Here a Fake stands in for a real implementation; options
// such as WithLogger tune the server.
func ExampleServe() {
	impl := &sdktest.Fake{
		IssuePasswordF: func(context.Context, *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
			return &sdk.IssuePasswordResponse{Password: "from-a-real-generator"}, nil
		},
	}
	sdk.Serve(impl, sdk.WithLogger(hclog.Default()))
}

// A host launches the plugin binary and uses it as a Gateway.
func ExampleLaunch() {
	client, err := sdk.Launch(sdk.LaunchConfig{Path: "bin/gateway-email-plugin"})
	if err != nil {
		return
	}
	defer client.Kill()
	_, _ = client.Health(context.Background(), &sdk.HealthRequest{})
}
