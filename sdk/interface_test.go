package sdk

import (
	"context"
	"errors"
	"testing"
)

// core is a plugin of the core alone; withRender adds one capability.
type core struct{}

func (core) Configure(context.Context, *ConfigureRequest) (*ConfigureResponse, error) {
	return &ConfigureResponse{}, nil
}

func (core) IssuePassword(context.Context, *IssuePasswordRequest) (*IssuePasswordResponse, error) {
	return &IssuePasswordResponse{}, nil
}

func (core) SendMessage(context.Context, *SendMessageRequest) (*SendMessageResponse, error) {
	return &SendMessageResponse{}, nil
}

func (core) Health(context.Context, *HealthRequest) (*HealthResponse, error) {
	return &HealthResponse{}, nil
}

type withRender struct{ core }

func (withRender) Render(context.Context, *RenderRequest) (*RenderResponse, error) {
	return &RenderResponse{Subject: "rendered"}, nil
}

// In process, a capability is the method a plugin has: AsRemote forwards
// the ones it has and answers ErrUnsupported for the others.
func TestAsRemoteOffersTheCapabilitiesAPluginHas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bare := AsRemote(core{})
	if _, err := bare.Render(ctx, &RenderRequest{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Render of the core alone = %v, want ErrUnsupported", err)
	}
	if _, err := bare.Probe(ctx, &ProbeRequest{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Probe of the core alone = %v, want ErrUnsupported", err)
	}
	r := AsRemote(withRender{})
	if resp, err := r.Render(ctx, &RenderRequest{}); err != nil || resp.Subject != "rendered" {
		t.Errorf("Render = %+v, %v; want the plugin's own", resp, err)
	}
	if _, err := r.Probe(ctx, &ProbeRequest{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Probe without the capability = %v, want ErrUnsupported", err)
	}
	full := AsRemote(bare)
	if full != bare {
		t.Error("AsRemote wrapped a Remote again")
	}
}
