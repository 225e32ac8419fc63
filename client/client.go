package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// Client is a connection to pushercm. It is safe for concurrent use; make one
// per process and Close it at shutdown.
type Client struct {
	conn  *grpc.ClientConn
	bc    pushercmv1.BroadcastServiceClient
	auth  pushercmv1.AuthServiceClient
	retry RetryPolicy
	newID func() string
}

type options struct {
	token    func(ctx context.Context) (string, error)
	insecure bool
	creds    credentials.TransportCredentials
	retry    RetryPolicy
	dialOpts []grpc.DialOption
	noWait   bool
	newID    func() string
}

// Option configures Dial.
type Option func(*options)

// WithToken sets a fixed service token (a JWT with the events:publish scope
// for BroadcastService).
func WithToken(token string) Option {
	return func(o *options) {
		o.token = func(context.Context) (string, error) { return token, nil }
	}
}

// WithTokenSource sets a function called for every RPC, for tokens that are
// refreshed while the process runs.
func WithTokenSource(f func(ctx context.Context) (string, error)) Option {
	return func(o *options) { o.token = f }
}

// WithInsecure uses a plaintext connection and lets the token travel over it.
// Only for local development and tests.
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithTransportCredentials sets TLS (or other) transport credentials. The
// default is TLS with the system roots.
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = c }
}

// WithRetry replaces the retry policy (DefaultRetryPolicy). A policy with
// MaxAttempts 1 disables retries.
func WithRetry(p RetryPolicy) Option { return func(o *options) { o.retry = p } }

// WithDialOptions adds raw grpc dial options (interceptors, stats handlers).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithoutWaitForReady makes Dial return at once; the connection is then made
// by the first call. By default Dial waits until the server is reachable or
// ctx ends.
func WithoutWaitForReady() Option { return func(o *options) { o.noWait = true } }

// WithIDGenerator replaces the generator of event ids (default: UUIDv4).
func WithIDGenerator(f func() string) Option { return func(o *options) { o.newID = f } }

// Dial connects to pushercm at target (host:port, or any grpc-go target). It
// waits until the connection is ready or ctx ends, unless
// WithoutWaitForReady is given.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	o := options{retry: DefaultRetryPolicy(), newID: newUUID}
	for _, f := range opts {
		f(&o)
	}
	o.retry = o.retry.withDefaults()
	creds := o.creds
	switch {
	case creds != nil && o.insecure:
		return nil, errors.New("client: WithInsecure and WithTransportCredentials exclude each other")
	case o.insecure:
		creds = insecure.NewCredentials()
	case creds == nil:
		creds = credentials.NewTLS(nil)
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(retryInterceptor(o.retry)),
		grpc.WithUserAgent("pushercm-go-client"),
	}
	if o.token != nil {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer{token: o.token, requireTLS: !o.insecure}))
	}
	dialOpts = append(dialOpts, o.dialOpts...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{
		conn: conn, bc: pushercmv1.NewBroadcastServiceClient(conn), auth: pushercmv1.NewAuthServiceClient(conn),
		retry: o.retry, newID: o.newID,
	}
	if !o.noWait {
		if err := waitReady(ctx, conn); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("client: connecting to %s: %w", target, err)
		}
	}
	return c, nil
}

func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if s == connectivity.Shutdown {
			return errors.New("connection closed")
		}
		if !conn.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection, for the other services' stubs
// (ConnectionService, grpc.health.v1). Calls on it carry the token and the
// retry interceptor too.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Broadcast is the raw BroadcastService stub.
func (c *Client) Broadcast() pushercmv1.BroadcastServiceClient { return c.bc }

// bearer is per-RPC credentials carrying the service token.
type bearer struct {
	token      func(ctx context.Context) (string, error)
	requireTLS bool
}

func (b bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := b.token(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: token: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }
