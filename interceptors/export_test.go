package interceptors

import "google.golang.org/grpc"

// UnaryInterceptors is the unary chain ServerOptions installs, in order.
func (c *Chain) UnaryInterceptors() []grpc.UnaryServerInterceptor { return c.unary() }
