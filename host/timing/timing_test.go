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

// Every plugin call on a reset's path counts as plugin time, the rendering
// check included.
func TestRenderIsPluginTime(t *testing.T) {
	t.Parallel()
	g := Gateway{Gateway: &sdktest.Fake{RenderF: func(context.Context, *sdk.RenderRequest) (*sdk.RenderResponse, error) {
		time.Sleep(2 * time.Millisecond)
		return &sdk.RenderResponse{}, nil
	}}}
	ctx, split := Start(context.Background())
	if _, err := g.Render(ctx, &sdk.RenderRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, plugin := split.Parts(); plugin < 2*time.Millisecond {
		t.Errorf("plugin time %s, want at least the render's 2ms", plugin)
	}
}
