package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync/atomic"

	llibtls "github.com/lesismal/llib/std/crypto/tls"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/milequest/pushercm/certs"
	"github.com/milequest/pushercm/config"
)

// listenerTLS holds the certificate reloaders of the listeners that speak
// TLS; nil fields are plaintext listeners.
type listenerTLS struct {
	grpc, http, ops *certs.Reloader
	grpcConfig      *tls.Config
}

// newListenerTLS loads every configured certificate pair (and the gRPC
// client CAs) so that a bad file stops start-up with the key that names it.
func (a *App) newListenerTLS() (*listenerTLS, error) {
	cfg := a.cfg
	var (
		lt  listenerTLS
		err error
	)
	load := func(key string, t config.TLS) (*certs.Reloader, error) {
		if !t.Enabled() {
			return nil, nil
		}
		r, err := certs.New(t.CertFile, t.KeyFile, t.ReloadInterval, a.log.With("listener", key))
		if err != nil {
			return nil, fmt.Errorf("%s.tls: %w", key, err)
		}
		return r, nil
	}
	if lt.grpc, err = load("grpc", cfg.GRPC.TLS.TLS); err != nil {
		return nil, err
	}
	if lt.http, err = load("http", cfg.HTTP.TLS); err != nil {
		return nil, err
	}
	if lt.ops, err = load("ops", cfg.Ops.TLS); err != nil {
		return nil, err
	}
	if lt.grpc != nil {
		var cas *x509.CertPool
		if f := cfg.GRPC.TLS.ClientCAFile; f != "" {
			if cas, err = certs.LoadCAs(f); err != nil {
				return nil, fmt.Errorf("grpc.tls.clientCAFile: %w", err)
			}
		}
		lt.grpcConfig = lt.grpc.ServerConfig(cas)
	}
	return &lt, nil
}

// grpcOptions are the gRPC server's transport credentials.
func (lt *listenerTLS) grpcOptions() []grpc.ServerOption {
	if lt == nil || lt.grpcConfig == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(inProcessPlain{credentials.NewTLS(lt.grpcConfig)})}
}

// inProcessPlain is the gRPC listener's TLS, except on in-process connections
// (the console gateway's in-memory listener): those never leave the process,
// so they are served in plaintext and keep working with TLS and mTLS on.
type inProcessPlain struct {
	credentials.TransportCredentials
}

// inProcess marks a connection made inside the process.
type inProcess interface{ InProcess() }

func (c inProcessPlain) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if _, ok := conn.(inProcess); ok {
		return conn, inProcessInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c inProcessPlain) Clone() credentials.TransportCredentials {
	return inProcessPlain{c.TransportCredentials.Clone()}
}

type inProcessInfo struct{ credentials.CommonAuthInfo }

func (inProcessInfo) AuthType() string { return "in-process" }

// wrap returns ln speaking TLS with r's certificate, or ln when r is nil.
func wrapTLS(ln net.Listener, r *certs.Reloader) net.Listener {
	if r == nil {
		return ln
	}
	c := r.ServerConfig(nil)
	c.NextProtos = []string{"http/1.1"}
	return tls.NewListener(ln, c)
}

// edgeTLS is the realtime listener's TLS for the embedded server, in nbio's
// fork of crypto/tls. The converted certificate is cached per loaded pair,
// so a handshake allocates nothing unless the files changed.
func edgeTLS(r *certs.Reloader) *llibtls.Config {
	if r == nil {
		return nil
	}
	type cached struct {
		from *certs.Pair
		cert *llibtls.Certificate
	}
	var cache atomic.Pointer[cached]
	return &llibtls.Config{
		MinVersion: llibtls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*llibtls.ClientHelloInfo) (*llibtls.Certificate, error) {
			p := r.Current()
			if c := cache.Load(); c != nil && c.from == p {
				return c.cert, nil
			}
			cert := &llibtls.Certificate{Certificate: p.Cert.Certificate, PrivateKey: p.Cert.PrivateKey, Leaf: p.Cert.Leaf}
			cache.Store(&cached{from: p, cert: cert})
			return cert, nil
		},
	}
}
