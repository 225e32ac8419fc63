package interceptors

import "google.golang.org/grpc"

// UnaryInterceptors is the unary chain ServerOptions installs, in order.
func (c *Chain) UnaryInterceptors() []grpc.UnaryServerInterceptor { return c.unary() }

// WithRateLimitPrincipal lets the black-box tests name the caller without
// the auth interceptor.
var WithRateLimitPrincipal = withRateLimitPrincipal

// WithRateLimitMethodCounts lets the black-box tests read per-method counts.
var WithRateLimitMethodCounts = withRateLimitMethodCounts
