package sdk

import (
	"context"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/pb"
)

// grpcClient adapts the generated gRPC client to Remote. The caller's ctx
// crosses the wire, so its deadline bounds the plugin's work too; a
// capability the plugin lacks comes back as ErrUnsupported (fromStatus).
type grpcClient struct {
	c pb.GatewayClient
}

func (c *grpcClient) Configure(ctx context.Context, r *ConfigureRequest) (*ConfigureResponse, error) {
	resp, err := c.c.Configure(ctx, &pb.ConfigureRequest{ConfigJson: r.Config})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &ConfigureResponse{Warnings: resp.GetWarnings()}, nil
}

func (c *grpcClient) IssuePassword(ctx context.Context, r *IssuePasswordRequest) (*IssuePasswordResponse, error) {
	resp, err := c.c.IssuePassword(ctx, &pb.IssuePasswordRequest{IdentityId: r.IdentityID})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &IssuePasswordResponse{Password: resp.GetPassword()}, nil
}

func (c *grpcClient) SendMessage(ctx context.Context, r *SendMessageRequest) (*SendMessageResponse, error) {
	resp, err := c.c.SendMessage(ctx, sendToProto(r))
	if err != nil {
		return nil, fromStatus(err)
	}
	return &SendMessageResponse{ServerReply: resp.GetServerReply(), Trace: stepsFromProto(resp.GetTrace())}, nil
}

func (c *grpcClient) Health(ctx context.Context, _ *HealthRequest) (*HealthResponse, error) {
	resp, err := c.c.Health(ctx, &pb.HealthRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &HealthResponse{Configured: resp.GetConfigured(), Detail: resp.GetDetail()}, nil
}

func (c *grpcClient) Render(ctx context.Context, r *RenderRequest) (*RenderResponse, error) {
	resp, err := c.c.Render(ctx, renderToProto(r))
	if err != nil {
		return nil, fromStatus(err)
	}
	return &RenderResponse{Subject: resp.GetSubject(), TextBody: resp.GetTextBody(), HTMLBody: resp.GetHtmlBody(), Locale: resp.GetLocale()}, nil
}

func (c *grpcClient) Probe(ctx context.Context, r *ProbeRequest) (*ProbeResponse, error) {
	resp, err := c.c.Probe(ctx, &pb.ProbeRequest{Recipient: r.Recipient})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &ProbeResponse{Delivered: resp.GetDelivered(), Trace: stepsFromProto(resp.GetTrace()), Err: resp.GetError()}, nil
}
