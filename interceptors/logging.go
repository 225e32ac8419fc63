package interceptors

import (
	"context"
	"log/slog"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// slogger adapts slog to the middleware's logger.
func slogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// codeToLevel logs successful calls at DEBUG (PUSHERCM_LOG_LEVEL=DEBUG shows
// every RPC), caller mistakes at INFO and server-side failures at WARN or
// ERROR.
func codeToLevel(c codes.Code) logging.Level {
	switch c {
	case codes.OK:
		return logging.LevelDebug
	case codes.Canceled, codes.Unimplemented, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted,
		codes.FailedPrecondition, codes.OutOfRange:
		return logging.LevelInfo
	case codes.DeadlineExceeded, codes.Unavailable, codes.Aborted:
		return logging.LevelWarn
	}
	return logging.LevelError
}

func loggingOptions() []logging.Option {
	return []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
}

// LoggingUnary logs every finished unary call (with the trace id, through
// the logger's handler).
func LoggingUnary(l *slog.Logger) grpc.UnaryServerInterceptor {
	return logging.UnaryServerInterceptor(slogger(l), loggingOptions()...)
}

// LoggingStream logs every finished stream.
func LoggingStream(l *slog.Logger) grpc.StreamServerInterceptor {
	return logging.StreamServerInterceptor(slogger(l), loggingOptions()...)
}
