package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/web/console"
	"github.com/milequest/pushercm/web/demo"
)

// demoTokenTTL is how long a demo user token lives.
const demoTokenTTL = 12 * time.Hour

// wireDemo serves the demo app on the realtime listener when demo.enabled
// is on (the default with --dev). Its token endpoint exists in dev mode
// only, and only with an HMAC JWT secret to mint with.
func (a *App) wireDemo(context.Context) error {
	cfg := &a.cfg.Config
	if !config.Bool(cfg.Demo.Enabled, false) {
		return nil
	}
	dc := demo.Config{AppKey: cfg.Pusher.Key, GRPCAddr: func() string { return displayAddr(a.GRPCAddr()) }}
	if cfg.Dev && cfg.JWT.Secret != "" {
		secret := []byte(cfg.JWT.Secret)
		dc.Mint = func(userID, name string, teams []string) (string, error) {
			return authz.Mint(secret, authz.MintOptions{
				Subject: userID, Name: name, Teams: teams, TTL: demoTokenTTL,
				Issuer: cfg.JWT.Issuer, Audience: cfg.JWT.Audience, Claims: cfg.JWT.Claims,
			})
		}
	}
	return demo.Register(dc, func(pattern string, h http.Handler) {
		a.handleRealtimeLimit(pattern, h, demoMaxBodyBytes)
	})
}

// demoMaxBodyBytes bounds a request to the demo's routes: the token request is
// a user id, a name and a team.
const demoMaxBodyBytes = 4 << 10

// inProcessListener hands the gRPC server the console gateway's in-memory
// connections marked as such, so they are served without TLS (see
// inProcessPlain).
type inProcessListener struct{ *bufconn.Listener }

func (l inProcessListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return inProcessConn{c}, nil
}

type inProcessConn struct{ net.Conn }

func (inProcessConn) InProcess() {}

// consoleBufSize is the in-memory connection's buffer between the console
// gateway and the gRPC server.
const consoleBufSize = 1 << 20

// wireConsole serves the operator console on the ops listener when
// ops.console is on. Its API calls the process's own gRPC server over an
// in-memory listener, so the console goes through the same interceptors
// (token check, scopes, rate limits) as any gRPC caller.
func (a *App) wireConsole(mux *http.ServeMux) error {
	if !a.cfg.Ops.Console {
		return nil
	}
	a.consoleLn = bufconn.Listen(consoleBufSize)
	conn, err := grpc.NewClient("passthrough:///pushercm-console",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return a.consoleLn.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("ops.console: %w", err)
	}
	a.closers = append(a.closers, func(context.Context) error { return conn.Close() })
	return console.Register(console.Config{Conn: conn}, func(p string, h http.Handler) { mux.Handle(p, h) })
}

// displayAddr turns a listen address into one a browser user can dial
// (":50051" and "[::]:50051" become "localhost:50051").
func displayAddr(addr string) string {
	switch {
	case strings.HasPrefix(addr, ":"):
		return "localhost" + addr
	case strings.HasPrefix(addr, "[::]:"):
		return "localhost" + strings.TrimPrefix(addr, "[::]")
	case strings.HasPrefix(addr, "0.0.0.0:"):
		return "localhost" + strings.TrimPrefix(addr, "0.0.0.0")
	}
	return addr
}
