package interceptors

import (
	"context"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
)

// Chain is the server's interceptor chain, in order: call tracking
// (tracing, duration and outcome counts), logging, error mapping, service
// auth, rate limit, the stream stopper (streams only), recovery (last, so
// a panic anywhere in a handler becomes INTERNAL and still passes through
// error mapping and logging).
type Chain struct {
	// Track, when set, sees every call the chain sees, outermost: Begin
	// first (the call's context is the one it returns), End last with
	// the status the client gets.
	Track  Tracker
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
	return []grpc.UnaryServerInterceptor{c.unaryFused()}
}

// unaryFused is the unary chain as one interceptor: logging, error
// mapping, service auth, rate limit and recovery do what their stream
// interceptors do (LoggingStream, ErrorMapper.Stream, Auth.Stream, the rate
// limiter, RecoveryStream), in that order, without the closure
// grpc-go's chaining allocates per step and call and the stack frames it
// adds (a publish call's stack grows less often). Recovery covers
// authentication and the rate limiter as well as the handler.
func (c *Chain) unaryFused() grpc.UnaryServerInterceptor {
	onPanic := recoveryHandler(c.Log)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		if c.Track != nil {
			ctx = c.Track.Begin(ctx, info.FullMethod)
		}
		resp, err := c.unaryInner(ctx, req, info, handler, onPanic)
		if err != nil {
			resp, err = nil, c.Errors.Status(ctx, info.FullMethod, err).Err()
		}
		logFinished(ctx, c.Log, info.FullMethod, "unary", start, err)
		if c.Track != nil {
			c.Track.End(ctx, info.FullMethod, start, err)
		}
		return resp, err
	}
}

// Tracker observes calls from the outermost interceptor (see Chain.Track).
type Tracker interface {
	// Begin is called when a call reaches the chain; the call goes on
	// with the context it returns.
	Begin(ctx context.Context, fullMethod string) context.Context
	// End is called when it ends, with err the status the client gets
	// (nil for OK) and begin the time Begin was called.
	End(ctx context.Context, fullMethod string, begin time.Time, err error)
}

// trackStream is the stream chain's Track step.
func (c *Chain) trackStream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		begin := time.Now()
		ctx := c.Track.Begin(ss.Context(), info.FullMethod)
		err := handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		c.Track.End(ctx, info.FullMethod, begin, err)
		return err
	}
}

// unaryInner authenticates, rate-limits and calls the handler, turning a
// panic into INTERNAL.
func (c *Chain) unaryInner(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler, onPanic recovery.RecoveryHandlerFuncContext) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, onPanic(ctx, p)
		}
	}()
	if ctx, err = c.Auth.authenticate(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	if c.RateLimitUnary != nil {
		return c.RateLimitUnary(ctx, req, info, handler)
	}
	return handler(ctx, req)
}

func (c *Chain) stream() []grpc.StreamServerInterceptor {
	var stream []grpc.StreamServerInterceptor
	if c.Track != nil {
		stream = append(stream, c.trackStream())
	}
	stream = append(stream, LoggingStream(c.Log), c.Errors.Stream(), c.Auth.Stream())
	if c.RateLimitStream != nil {
		stream = append(stream, c.RateLimitStream)
	}
	if c.Streams != nil {
		stream = append(stream, c.Streams.Stream())
	}
	return append(stream, RecoveryStream(c.Log))
}
