package interceptors

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/errcode"
)

// ErrShuttingDown ends the streams a StreamStopper cuts and refuses streams
// opened after it stopped. It maps to UNAVAILABLE, so clients retry on
// another instance.
var ErrShuttingDown = &errcode.Error{Code: errcode.ConnectionFailed, Message: "server is shutting down", Temporary: true}

// StreamStopper ends streaming calls when the server shuts down.
//
// grpc-go's GracefulStop waits for every open stream, and some never end on
// their own: grpc.health.v1 Watch (which clients with client-side health
// checking keep open, with no token), reflection streams, and
// WatchConnectionEvents. Left alone, one of them holds the graceful stop
// until its deadline. Stop ends them all at once: each stream's context is
// cancelled, so handlers that watch it return, and the call is answered
// UNAVAILABLE right away even when its handler is blocked in RecvMsg (as a
// reflection stream waiting for its next request is): writing the status
// makes grpc-go cancel the transport stream, which releases that RecvMsg.
// Sends the handler attempts after that fail without touching the stream;
// a send in progress is waited for. Unary calls are not affected: the
// graceful stop lets them finish.
//
// Use it as a stream interceptor outside recovery: the handler runs on a
// goroutine of its own, where recovery must catch its panics.
type StreamStopper struct {
	stopped chan struct{}
	once    sync.Once
}

// NewStreamStopper returns a stopper whose streams run until Stop.
func NewStreamStopper() *StreamStopper {
	return &StreamStopper{stopped: make(chan struct{})}
}

// Stop ends every open stream and refuses new ones. It does not wait for
// the handlers; GracefulStop does.
func (s *StreamStopper) Stop() { s.once.Do(func() { close(s.stopped) }) }

// Done is closed by Stop.
func (s *StreamStopper) Done() <-chan struct{} { return s.stopped }

// Stream is the interceptor.
func (s *StreamStopper) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		select {
		case <-s.stopped:
			return ErrShuttingDown
		default:
		}
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		w := &stoppableStream{ServerStream: ss, ctx: ctx}
		done := make(chan error, 1)
		go func() { done <- handler(srv, w) }()
		select {
		case err := <-done:
			return err
		case <-s.stopped:
		}
		select {
		case err := <-done: // finished meanwhile: its own outcome stands
			return err
		default:
		}
		cancel()
		w.end()
		return ErrShuttingDown
	}
}

// stoppableStream is a server stream that a StreamStopper can end while its
// handler still runs: after end, every call that writes to the stream fails.
type stoppableStream struct {
	grpc.ServerStream
	ctx context.Context

	mu    sync.Mutex
	ended bool
}

func (w *stoppableStream) Context() context.Context { return w.ctx }

// end waits for a write in progress and fails the ones after it.
func (w *stoppableStream) end() {
	w.mu.Lock()
	w.ended = true
	w.mu.Unlock()
}

// write runs f on the stream unless it was ended.
func (w *stoppableStream) write(f func() error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return ErrShuttingDown
	}
	return f()
}

func (w *stoppableStream) SendMsg(m any) error {
	return w.write(func() error { return w.ServerStream.SendMsg(m) })
}

func (w *stoppableStream) SetHeader(md metadata.MD) error {
	return w.write(func() error { return w.ServerStream.SetHeader(md) })
}

func (w *stoppableStream) SendHeader(md metadata.MD) error {
	return w.write(func() error { return w.ServerStream.SendHeader(md) })
}

func (w *stoppableStream) SetTrailer(md metadata.MD) {
	_ = w.write(func() error { w.ServerStream.SetTrailer(md); return nil })
}
