package interceptors

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"

	"github.com/milequest/pushercm/telemetry"
)

// errPanic is what a panicking handler returns: it carries no code, so Map
// answers the fixed INTERNAL status with ErrorInfo{reason: INTERNAL}.
var errPanic = errors.New("handler panicked")

// recoveryHandler logs the panic with its stack and the trace id, and
// answers a fixed INTERNAL error with ErrorInfo: the stack never reaches
// the client. It maps the error itself, so the answer is the same wherever
// recovery sits in the chain.
func recoveryHandler(l *slog.Logger) recovery.RecoveryHandlerFuncContext {
	return func(ctx context.Context, p any) error {
		l.LogAttrs(ctx, slog.LevelError, "panic in handler", slog.Any("panic", p),
			slog.String("stack", string(debug.Stack())), slog.String("trace_id", telemetry.TraceID(ctx)))
		return Map(errPanic).Status.Err()
	}
}

// RecoveryStream turns handler panics into INTERNAL.
func RecoveryStream(l *slog.Logger) grpc.StreamServerInterceptor {
	return recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(recoveryHandler(l)))
}
