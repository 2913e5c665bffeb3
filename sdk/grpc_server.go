package sdk

import (
	"context"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/pb"
)

// grpcServer adapts a Gateway to the generated gRPC service.
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
	return &pb.SendMessageResponse{ServerReply: resp.ServerReply}, nil
}

func (s *grpcServer) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	resp, err := s.impl.Health(ctx, &HealthRequest{})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.HealthResponse{Configured: resp.Configured, Detail: resp.Detail}, nil
}
