package edgetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/internal/pushertest"
)

// The test app: what Config fills in and pushertest.Dial is given.
const (
	AppID  = "app-id"
	Key    = "app-key"
	Secret = "app-secret"
)

// Config is the edge configuration of the test app, with user sign-in on and
// a short close grace so closed sockets do not keep tests waiting.
func Config() edge.Config {
	return edge.Config{AppID: AppID, Key: Key, Secret: Secret, UserAuthEnabled: true, CloseGrace: 300 * time.Millisecond}
}

// Edge is a started edge.
type Edge struct {
	*edge.Server
	key, secret string
	once        sync.Once
	stopErr     error
}

// Start starts an edge with cfg on 127.0.0.1:0; it is shut down at cleanup
// (or earlier by Stop). A cfg without AppID, Key and Secret serves the test
// app.
func Start(t testing.TB, cfg edge.Config, opts ...edge.Option) *Edge {
	t.Helper()
	if cfg.AppID == "" && cfg.Key == "" && cfg.Secret == "" {
		cfg.AppID, cfg.Key, cfg.Secret = AppID, Key, Secret
	}
	s, err := edge.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e := &Edge{Server: s, key: cfg.Key, secret: cfg.Secret}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("edge shutdown: %v", err)
		}
	})
	return e
}

// Stop shuts the edge down, waiting up to pushertest.Wait; only the first
// call does it, later ones return its error.
func (e *Edge) Stop() error {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pushertest.Wait)
		defer cancel()
		e.stopErr = e.Shutdown(ctx)
	})
	return e.stopErr
}

// Dial connects a pushertest client to the edge's app.
func (e *Edge) Dial(t testing.TB) *pushertest.Client {
	t.Helper()
	return pushertest.Dial(t, e.Addr().String(), e.key, e.secret)
}
