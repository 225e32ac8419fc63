package peers

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
)

// GRPCCall is one server's gRPC publish call, made the same way for every
// server: the request is encoded once (Request) and sent as bytes.
type GRPCCall struct {
	Addr   string
	Method string // full method, "/package.Service/Method"
	// Authorization is the outgoing "authorization" metadata.
	Authorization string
	// Request encodes the call's request publishing data to channel.
	Request func(channel, data string) []byte
}

// Client dials Addr with n connections; callers take them round-robin.
func (g *GRPCCall) Client(n int) (*GRPCClient, error) {
	c := &GRPCClient{g: g}
	for i := 0; i < max(n, 1); i++ {
		cc, err := grpc.NewClient(g.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.conns = append(c.conns, cc)
	}
	c.ctx = metadata.AppendToOutgoingContext(context.Background(), "authorization", g.Authorization)
	return c, nil
}

// GRPCClient sends a GRPCCall.
type GRPCClient struct {
	g     *GRPCCall
	conns []*grpc.ClientConn
	ctx   context.Context
}

// Call sends req (from Request) on connection worker%n; the response is
// not decoded.
func (c *GRPCClient) Call(worker int, req []byte) error {
	var resp []byte
	return c.conns[worker%len(c.conns)].Invoke(c.ctx, c.g.Method, req, &resp)
}

// Close closes the connections.
func (c *GRPCClient) Close() {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
}

// rawCodec sends []byte as an already encoded protobuf message and keeps the
// response undecoded. Its name is "proto", so servers decode with their own
// generated types.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T is not []byte", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

// Unmarshal reads nothing: the callers only need the call's status.
func (rawCodec) Unmarshal(_ mem.BufferSlice, v any) error {
	if _, ok := v.(*[]byte); !ok {
		return fmt.Errorf("rawCodec: %T is not *[]byte", v)
	}
	return nil
}

func (rawCodec) Name() string { return "proto" }
