package sdk

import (
	"context"
	"fmt"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/pb"
)

// grpcServer adapts a Gateway to the generated gRPC service. A capability
// impl does not implement is answered Unimplemented, as the generated
// service answers a method a plugin in another language leaves out.
type grpcServer struct {
	pb.UnimplementedGatewayServer
	impl Gateway
}

func (s *grpcServer) Configure(ctx context.Context, r *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	resp, err := s.impl.Configure(ctx, &ConfigureRequest{Config: r.GetConfigJson()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ConfigureResponse{Warnings: resp.Warnings}, nil
}

func (s *grpcServer) IssuePassword(ctx context.Context, r *pb.IssuePasswordRequest) (*pb.IssuePasswordResponse, error) {
	resp, err := s.impl.IssuePassword(ctx, &IssuePasswordRequest{IdentityID: r.GetIdentityId()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.IssuePasswordResponse{Password: resp.Password}, nil
}

func (s *grpcServer) SendMessage(ctx context.Context, r *pb.SendMessageRequest) (*pb.SendMessageResponse, error) {
	req, err := sendFromProto(r)
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.impl.SendMessage(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SendMessageResponse{ServerReply: resp.ServerReply, Trace: stepsToProto(resp.Trace)}, nil
}

func (s *grpcServer) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	resp, err := s.impl.Health(ctx, &HealthRequest{})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.HealthResponse{Configured: resp.Configured, Detail: resp.Detail}, nil
}

func (s *grpcServer) Render(ctx context.Context, r *pb.RenderRequest) (*pb.RenderResponse, error) {
	impl, ok := s.impl.(Renderer)
	if !ok {
		return nil, toStatus(fmt.Errorf("Render: %w", ErrUnsupported))
	}
	req, err := renderFromProto(r)
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := impl.Render(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RenderResponse{Subject: resp.Subject, TextBody: resp.TextBody, HtmlBody: resp.HTMLBody, Locale: resp.Locale}, nil
}

func (s *grpcServer) Probe(ctx context.Context, r *pb.ProbeRequest) (*pb.ProbeResponse, error) {
	impl, ok := s.impl.(Prober)
	if !ok {
		return nil, toStatus(fmt.Errorf("Probe: %w", ErrUnsupported))
	}
	resp, err := impl.Probe(ctx, &ProbeRequest{Recipient: r.GetRecipient()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ProbeResponse{Delivered: resp.Delivered, Trace: stepsToProto(resp.Trace), Error: resp.Err}, nil
}
