package interceptors

import (
	"log/slog"

	"google.golang.org/grpc"
)

// Chain is the server's interceptor chain, in order: logging, error
// mapping, service auth, rate limit, the stream stopper (streams only),
// recovery (last, so a panic anywhere in a handler becomes INTERNAL and
// still passes through error mapping and logging). Tracing is a stats
// handler (telemetry.NewServerHandler) outside the chain.
type Chain struct {
	Log    *slog.Logger
	Errors *ErrorMapper
	Auth   *Auth
	// RateLimit interceptors; nil means none.
	RateLimitUnary  grpc.UnaryServerInterceptor
	RateLimitStream grpc.StreamServerInterceptor
	// Streams ends streaming calls at shutdown; nil means streams run until
	// they end or the server is stopped.
	Streams *StreamStopper
}

// ServerOptions returns the chain as server options.
func (c *Chain) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(c.unary()...), grpc.ChainStreamInterceptor(c.stream()...)}
}

func (c *Chain) unary() []grpc.UnaryServerInterceptor {
	unary := []grpc.UnaryServerInterceptor{LoggingUnary(c.Log), c.Errors.Unary(), c.Auth.Unary()}
	if c.RateLimitUnary != nil {
		unary = append(unary, c.RateLimitUnary)
	}
	return append(unary, RecoveryUnary(c.Log))
}

func (c *Chain) stream() []grpc.StreamServerInterceptor {
	stream := []grpc.StreamServerInterceptor{LoggingStream(c.Log), c.Errors.Stream(), c.Auth.Stream()}
	if c.RateLimitStream != nil {
		stream = append(stream, c.RateLimitStream)
	}
	if c.Streams != nil {
		stream = append(stream, c.Streams.Stream())
	}
	return append(stream, RecoveryStream(c.Log))
}
