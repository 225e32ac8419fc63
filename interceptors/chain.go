package interceptors

import (
	"log/slog"

	"google.golang.org/grpc"
)

// Chain is the server's interceptor chain, in order: logging, error
// mapping, service auth, rate limit, recovery (last, so a panic anywhere in
// a handler becomes INTERNAL and still passes through error mapping and
// logging). Tracing is a stats handler (otelgrpc) outside the chain.
type Chain struct {
	Log    *slog.Logger
	Errors *ErrorMapper
	Auth   *Auth
	// RateLimit interceptors; nil means none.
	RateLimitUnary  grpc.UnaryServerInterceptor
	RateLimitStream grpc.StreamServerInterceptor
}

// ServerOptions returns the chain as server options.
func (c *Chain) ServerOptions() []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{LoggingUnary(c.Log), c.Errors.Unary(), c.Auth.Unary()}
	stream := []grpc.StreamServerInterceptor{LoggingStream(c.Log), c.Errors.Stream(), c.Auth.Stream()}
	if c.RateLimitUnary != nil {
		unary = append(unary, c.RateLimitUnary)
	}
	if c.RateLimitStream != nil {
		stream = append(stream, c.RateLimitStream)
	}
	unary = append(unary, RecoveryUnary(c.Log))
	stream = append(stream, RecoveryStream(c.Log))
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
}
