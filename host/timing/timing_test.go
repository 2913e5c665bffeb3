package timing

import (
	"context"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

func TestPluginCallsAreAddedToTheRequestsSplit(t *testing.T) {
	t.Parallel()
	g := Gateway{Gateway: &sdktest.Fake{SendMessageF: func(context.Context, *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
		time.Sleep(2 * time.Millisecond)
		return &sdk.SendMessageResponse{}, nil
	}}}
	ctx, split := Start(context.Background())
	for range 3 {
		if _, err := g.SendMessage(ctx, &sdk.SendMessageRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	kratos, plugin := split.Parts()
	if kratos != 0 || plugin < 6*time.Millisecond {
		t.Errorf("split kratos=%s plugin=%s, want 0 and at least the 3 sleeps", kratos, plugin)
	}
	// Without a split in ctx the calls still work.
	if _, err := g.SendMessage(context.Background(), &sdk.SendMessageRequest{}); err != nil {
		t.Fatal(err)
	}
}
