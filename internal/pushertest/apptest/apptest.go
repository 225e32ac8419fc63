package apptest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/milequest/pushercm/app"
	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest"
)

// App is a running app and the configuration it was started with.
type App struct {
	*app.App
	Config config.Config
	Logs   *pushertest.Buffer
	// CheckShutdown makes a failed shutdown at cleanup fail the test; off by
	// default because tests that leave clients or webhooks in flight may run
	// past the drain deadline, which is not what they test.
	CheckShutdown bool
}

// Production turns off dev mode with secrets of the test's own, since outside
// dev mode the published dev secrets are refused. Call it first in a mutate.
func Production(c *config.Config) {
	c.Dev = false
	c.Pusher.Secret = strings.Repeat("p", 32)
	c.JWT.Secret = strings.Repeat("j", 32)
	c.JWT.Service.Secret = strings.Repeat("s", 32)
	c.Pusher.EncryptionMasterKeyBase64 = ""
}

// Start runs the app after mutate (may be nil) adjusted the dev configuration.
func Start(t testing.TB, mutate func(*config.Config)) *App {
	t.Helper()
	return StartFile(t, "", mutate)
}

// StartFile is Start with the configuration first decoded from file (when not
// empty), which the app then watches for rule reloads.
func StartFile(t testing.TB, file string, mutate func(*config.Config)) *App {
	t.Helper()
	cfg := config.Default()
	if file != "" {
		if err := config.DecodeFile(file, &cfg); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Dev = true
	filled := cfg.ApplyDev()
	cfg.GRPC.Addr, cfg.HTTP.Addr, cfg.Ops.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log.Level = "DEBUG"
	cfg.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &pushertest.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), pushertest.Wait)
	defer cancel()
	a, err := app.New(ctx, &config.Loaded{Config: cfg, File: file, DevFilled: filled}, app.Options{LogOutput: logs})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	p := &App{App: a, Config: cfg, Logs: logs}
	t.Cleanup(func() {
		if err := p.shutdown(); err != nil && p.CheckShutdown {
			t.Errorf("Shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("app log (tail):\n%s", logs.Tail(60))
		}
	})
	return p
}

func (p *App) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), pushertest.Wait)
	defer cancel()
	return p.Shutdown(ctx)
}

// Dial connects a Pusher protocol client to the app's realtime listener.
func (p *App) Dial(t testing.TB) *pushertest.Client {
	t.Helper()
	return pushertest.Dial(t, p.HTTPAddr(), p.Config.Pusher.Key, p.Config.Pusher.Secret)
}

// Token mints a service token for sub with scopes, signed with the app's
// service-token secret (jwt.service.secret).
func (p *App) Token(t testing.TB, sub string, scopes ...string) string {
	t.Helper()
	return pushertest.Mint(t, p.Config.JWT.Service.Secret, authz.MintOptions{Subject: sub, Scopes: scopes})
}
