package sdk

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/pb"
)

// grpcPlugin is the go-plugin glue: the server side registers impl, the
// client side hands out a grpcClient.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl Gateway
}

func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterGatewayServer(s, &grpcServer{impl: p.impl})
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{c: pb.NewGatewayClient(c)}, nil
}
