package interceptors

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/telemetry"
)

// recoveryHandler logs the panic with its stack and the trace id, and
// answers a fixed INTERNAL error: the stack never reaches the client.
func recoveryHandler(l *slog.Logger) recovery.RecoveryHandlerFuncContext {
	return func(ctx context.Context, p any) error {
		l.LogAttrs(ctx, slog.LevelError, "panic in handler", slog.Any("panic", p),
			slog.String("stack", string(debug.Stack())), slog.String("trace_id", telemetry.TraceID(ctx)))
		return status.Error(codes.Internal, "internal error")
	}
}

// RecoveryUnary turns handler panics into INTERNAL.
func RecoveryUnary(l *slog.Logger) grpc.UnaryServerInterceptor {
	return recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(recoveryHandler(l)))
}

// RecoveryStream turns handler panics into INTERNAL.
func RecoveryStream(l *slog.Logger) grpc.StreamServerInterceptor {
	return recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(recoveryHandler(l)))
}
