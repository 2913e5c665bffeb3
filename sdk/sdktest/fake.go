package sdktest

import (
	"context"
	"fmt"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Fake is a plugin whose methods call the matching function field, for host
// tests that need no subprocess. A nil core field answers with a zero
// response, so a test sets only what it cares about; a nil capability field
// (RenderF, ProbeF) answers sdk.ErrUnsupported, as a plugin without that
// capability does.
type Fake struct {
	ConfigureF     func(context.Context, *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error)
	IssuePasswordF func(context.Context, *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error)
	SendMessageF   func(context.Context, *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error)
	HealthF        func(context.Context, *sdk.HealthRequest) (*sdk.HealthResponse, error)
	RenderF        func(context.Context, *sdk.RenderRequest) (*sdk.RenderResponse, error)
	ProbeF         func(context.Context, *sdk.ProbeRequest) (*sdk.ProbeResponse, error)
}

var _ sdk.Remote = (*Fake)(nil)

func (f *Fake) Configure(ctx context.Context, r *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
	if f.ConfigureF == nil {
		return &sdk.ConfigureResponse{}, nil
	}
	return f.ConfigureF(ctx, r)
}

func (f *Fake) IssuePassword(ctx context.Context, r *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
	if f.IssuePasswordF == nil {
		return &sdk.IssuePasswordResponse{}, nil
	}
	return f.IssuePasswordF(ctx, r)
}

func (f *Fake) SendMessage(ctx context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
	if f.SendMessageF == nil {
		return &sdk.SendMessageResponse{}, nil
	}
	return f.SendMessageF(ctx, r)
}

func (f *Fake) Health(ctx context.Context, r *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	if f.HealthF == nil {
		return &sdk.HealthResponse{}, nil
	}
	return f.HealthF(ctx, r)
}

func (f *Fake) Render(ctx context.Context, r *sdk.RenderRequest) (*sdk.RenderResponse, error) {
	if f.RenderF == nil {
		return nil, fmt.Errorf("Render: %w", sdk.ErrUnsupported)
	}
	return f.RenderF(ctx, r)
}

func (f *Fake) Probe(ctx context.Context, r *sdk.ProbeRequest) (*sdk.ProbeResponse, error) {
	if f.ProbeF == nil {
		return nil, fmt.Errorf("Probe: %w", sdk.ErrUnsupported)
	}
	return f.ProbeF(ctx, r)
}
