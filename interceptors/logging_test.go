package interceptors_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/internal/pushertest"
)

// recordSink keeps every record as "LEVEL msg" plus key=value lines.
type recordSink struct {
	mu    sync.Mutex
	level slog.Level
	recs  [][]string
}

func (s *recordSink) Enabled(_ context.Context, l slog.Level) bool { return l >= s.level }
func (s *recordSink) WithAttrs([]slog.Attr) slog.Handler           { return s }
func (s *recordSink) WithGroup(string) slog.Handler                { return s }
func (s *recordSink) Handle(_ context.Context, r slog.Record) error {
	rec := []string{r.Level.String() + " " + r.Message}
	r.Attrs(func(a slog.Attr) bool {
		v := a.Value.String()
		switch a.Key {
		case "grpc.start_time", "grpc.time_ms": // differ from call to call
			v = "<" + a.Value.Kind().String() + ">"
		}
		rec = append(rec, a.Key+"="+v)
		return true
	})
	s.mu.Lock()
	s.recs = append(s.recs, rec)
	s.mu.Unlock()
	return nil
}

func (s *recordSink) take() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.recs
	s.recs = nil
	return out
}

// referenceLogging is the go-grpc-middleware configuration LoggingUnary and
// LoggingStream replaced; their lines must not differ from its.
func referenceLogging(l *slog.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	lf := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	levels := func(c codes.Code) logging.Level {
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
	opts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(levels)}
	return logging.UnaryServerInterceptor(lf, opts...), logging.StreamServerInterceptor(lf, opts...)
}

// TestLoggingMatchesMiddleware runs the same calls through the reference
// and through LoggingUnary/LoggingStream, at DEBUG and at INFO, and wants
// the same records.
func TestLoggingMatchesMiddleware(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	run := func(t *testing.T, level slog.Level, reference bool) [][]string {
		sink := &recordSink{level: level}
		l := slog.New(sink)
		unary, stream := interceptors.LoggingUnary(l), interceptors.LoggingStream(l)
		if reference {
			unary, stream = referenceLogging(l)
		}
		srv := grpc.NewServer(grpc.UnaryInterceptor(unary), grpc.StreamInterceptor(stream))
		hs := health.NewServer()
		healthpb.RegisterHealthServer(srv, hs)
		client := healthpb.NewHealthClient(serveBufconn(t, srv))

		// OK without and with a deadline; NOT_FOUND with an error text.
		if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if _, err := client.Check(dctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"}); err == nil {
			t.Fatal("unknown service: want NOT_FOUND")
		}
		// A server stream ended by the client: CANCELED.
		sctx, scancel := context.WithCancel(context.Background())
		w, err := client.Watch(sctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatal(err)
		}
		scancel()
		_, _ = w.Recv()
		// The server logs the stream after the client saw it end.
		want := 4
		if level > slog.LevelDebug {
			want = 2
		}
		var recs [][]string
		pushertest.Eventually(t, fmt.Sprintf("%d log records", want), func() bool {
			recs = append(recs, sink.take()...)
			return len(recs) >= want
		})
		return recs
	}
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		t.Run(level.String(), func(t *testing.T) {
			want, got := run(t, level, true), run(t, level, false)
			if len(want) == 0 {
				t.Fatal("reference logged nothing")
			}
			if !slices.EqualFunc(want, got, slices.Equal[[]string]) {
				t.Errorf("records differ:\nmiddleware: %s\nours:       %s", fmt.Sprint(want), fmt.Sprint(got))
			}
		})
	}
}
