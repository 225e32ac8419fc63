package deploy_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/proctest"
	"github.com/milequest/pushercm/internal/testcerts"
	"github.com/milequest/pushercm/protocol"
)

// tlsServer runs the static binary with TLS on all three listeners (mTLS on
// gRPC), certificates checked on every handshake, from files in dir.
type tlsServer struct {
	*proctest.Process
	dir      string
	ca       *testcerts.CA
	bin      string
	certFile string
}

func startTLSServer(t *testing.T) *tlsServer {
	t.Helper()
	bin := staticBinary(t)
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "pushercm test CA")
	cert, key := ca.Server(t, "first")
	certFile := testcerts.Write(t, dir, "tls.crt", cert)
	keyFile := testcerts.Write(t, dir, "tls.key", key)
	caFile := testcerts.Write(t, dir, "ca.crt", ca.PEM)
	cfgFile := testcerts.Write(t, dir, "pushercm.yaml", []byte(`
grpc: {tls: {reloadInterval: 0s}}
http: {tls: {reloadInterval: 0s}}
ops: {tls: {reloadInterval: 0s}, console: true}
`))
	cmd := exec.Command(bin, "serve", "--dev", "--config", cfgFile,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	cmd.Env = append(proctest.CleanEnv(),
		"PUSHERCM_GRPC_TLS_CERT_FILE="+certFile, "PUSHERCM_GRPC_TLS_KEY_FILE="+keyFile,
		"PUSHERCM_GRPC_TLS_CLIENT_CA_FILE="+caFile,
		"PUSHERCM_HTTP_TLS_CERT_FILE="+certFile, "PUSHERCM_HTTP_TLS_KEY_FILE="+keyFile,
		"PUSHERCM_OPS_TLS_CERT_FILE="+certFile, "PUSHERCM_OPS_TLS_KEY_FILE="+keyFile,
	)
	return &tlsServer{Process: proctest.StartCmd(t, cmd), dir: dir, ca: ca, bin: bin, certFile: caFile}
}

// servedCN completes a TLS handshake with addr and returns the common name
// of the certificate the server presented.
func servedCN(t *testing.T, addr string, ca *testcerts.CA, client *tls.Certificate) string {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer func() { _ = c.Close() }()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestTLSEveryListener: gRPC with mTLS (grpcurl with the CA and a client
// certificate succeeds; a client without a certificate is refused), HTTPS on
// the ops listener (pushercm healthcheck with the CA), HTTPS on the realtime
// listener, and a certificate replaced on disk served by the next handshake
// on every listener. pusher-js over wss:// and the npm pusher SDK over
// https:// run in test/js (TestPusherJSOverTLS).
func TestTLSEveryListener(t *testing.T) {
	s := startTLSServer(t)
	clientPEM, clientKey := s.ca.Client(t, "publisher")
	clientCert := testcerts.Write(t, s.dir, "client.crt", clientPEM)
	clientKeyFile := testcerts.Write(t, s.dir, "client.key", clientKey)
	pair, err := tls.X509KeyPair(clientPEM, clientKey)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("grpcurl with the CA and a client certificate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "tool", "grpcurl", "-cacert", s.certFile,
			"-cert", clientCert, "-key", clientKeyFile, s.GRPCAddr, "list")
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "pushercm.v1.BroadcastService") {
			t.Fatalf("grpcurl list: %v\n%s", err, out)
		}
		cmd = exec.CommandContext(ctx, "go", "tool", "grpcurl", "-cacert", s.certFile,
			"-cert", clientCert, "-key", clientKeyFile, s.GRPCAddr, "grpc.health.v1.Health/Check")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "SERVING") {
			t.Fatalf("grpcurl health: %v\n%s", err, out)
		}
	})

	t.Run("mTLS refuses a client without a certificate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.ca.Pool()})))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Fatal("a client without a certificate got an answer")
		}
		// The same client with a certificate of the CA is served.
		withCert, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{RootCAs: s.ca.Pool(), Certificates: []tls.Certificate{pair}})))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = withCert.Close() }()
		if _, err := healthpb.NewHealthClient(withCert).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("with a client certificate: %v", err)
		}
		// And one signed by another CA is not.
		otherPEM, otherKey := testcerts.NewCA(t, "other CA").Client(t, "intruder")
		other, err := tls.X509KeyPair(otherPEM, otherKey)
		if err != nil {
			t.Fatal(err)
		}
		intruder, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{RootCAs: s.ca.Pool(), Certificates: []tls.Certificate{other}})))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = intruder.Close() }()
		if _, err := healthpb.NewHealthClient(intruder).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Fatal("a client certificate of another CA was accepted")
		}
	})

	t.Run("ops over HTTPS", func(t *testing.T) {
		if code, out := healthcheck(t, s.bin, []string{"PUSHERCM_OPS_TLS_CERT_FILE=x"}, "--addr", s.OpsAddr, "--ca-file", s.certFile); code != 0 {
			t.Fatalf("healthcheck over TLS: exit %d\n%s", code, out)
		}
		// Without the CA the certificate is not trusted.
		if code, _ := healthcheck(t, s.bin, nil, "--addr", s.OpsAddr, "--tls"); code != 1 {
			t.Fatalf("healthcheck trusting the system roots: exit %d, want 1", code)
		}
		// Plain HTTP is not served.
		if code, _ := healthcheck(t, s.bin, nil, "--addr", s.OpsAddr); code != 1 {
			t.Fatalf("plain-HTTP healthcheck: exit %d, want 1", code)
		}
	})

	t.Run("the console reaches gRPC with TLS and mTLS on", func(t *testing.T) {
		// The console gateway calls the process's own gRPC server in memory;
		// the listener's TLS and client-certificate checks must not refuse it.
		tok, err := authz.Mint([]byte(config.DevServiceSecret), authz.MintOptions{Subject: "console", Scopes: []string{"connections:read"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool()}}}
		req, err := http.NewRequest("POST", "https://"+s.OpsAddr+"/console/api/ConnectionService/GetHealthStatus", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "HEALTH_STATUS") {
			t.Fatalf("console GetHealthStatus over TLS: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("realtime over HTTPS", func(t *testing.T) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool()}}}
		resp, err := client.Get("https://" + s.HTTPAddr + "/apps/app-id/channels")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		// Unsigned: the HTTP API answers 401, which proves the request went
		// through TLS to the API.
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /apps/app-id/channels unsigned: %d, want 401", resp.StatusCode)
		}
	})

	t.Run("a wss:// subscriber receives more than the write queue holds", func(t *testing.T) {
		// TLS sockets are written through the event loop, which reports the
		// ciphertext it wrote; the edge's per-socket queue accounting must
		// still drain, or a busy TLS client is closed as a slow consumer.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		tlsDial := &tls.Dialer{Config: &tls.Config{RootCAs: s.ca.Pool()}}
		c := pushertest.Open(t, s.HTTPAddr, config.DevAppKey, config.DevAppSecret, pushertest.Options{NetDial: tlsDial.DialContext})
		if m := c.Next(); m.Event != protocol.EventConnectionEstablished {
			t.Fatalf("first frame %q, want connection_established", m.Event)
		}
		c.SubscribeAsync("bulk", "")
		c.Expect(protocol.EventSubscriptionSucceeded, "bulk")

		gc, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{RootCAs: s.ca.Pool(), Certificates: []tls.Certificate{pair}})))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = gc.Close() }()
		tok, err := authz.Mint([]byte(config.DevServiceSecret), authz.MintOptions{Subject: "bulk", Scopes: []string{"events:publish"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		bc := pushercmv1.NewBroadcastServiceClient(gc)
		const events, size = 100, 9000 // 900 KB, over the 256 KiB write queue
		data := `"` + strings.Repeat("x", size) + `"`
		for i := range events {
			if _, err := bc.SendEvent(authed, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
				Channels: []string{"bulk"}, Name: "big", Payload: &pushercmv1.Event_Data{Data: data}}}); err != nil {
				t.Fatalf("SendEvent %d: %v", i, err)
			}
		}
		for range events {
			c.Expect("big", "bulk")
		}
	})

	t.Run("a certificate replaced on disk is served by the next handshake", func(t *testing.T) {
		for name, addr := range map[string]string{"grpc": s.GRPCAddr, "http": s.HTTPAddr, "ops": s.OpsAddr} {
			if cn := servedCN(t, addr, s.ca, &pair); cn != "first" {
				t.Fatalf("%s served %q before the replacement, want first", name, cn)
			}
		}
		cert, key := s.ca.Server(t, "second")
		// Key first, then the certificate: between the two the pair does not
		// match and the first certificate stays in service.
		testcerts.Replace(t, s.dir, "tls.key", key)
		if cn := servedCN(t, s.HTTPAddr, s.ca, nil); cn != "first" {
			t.Fatalf("realtime served %q with a half-replaced pair, want first", cn)
		}
		testcerts.Replace(t, s.dir, "tls.crt", cert)
		for name, addr := range map[string]string{"grpc": s.GRPCAddr, "http": s.HTTPAddr, "ops": s.OpsAddr} {
			if cn := servedCN(t, addr, s.ca, &pair); cn != "second" {
				t.Fatalf("%s served %q after the replacement, want second", name, cn)
			}
		}
	})
}

// TestTLSRealtimeOnPusherDriver: on the pusher driver the realtime listener
// is net/http, not the embedded server; it serves https:// too.
func TestTLSRealtimeOnPusherDriver(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "pushercm test CA")
	cert, key := ca.Server(t, "pusher-driver")
	cmd := exec.Command(staticBinary(t), "serve", "--dev", "--driver", "pusher",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	cmd.Env = append(proctest.CleanEnv(), "PUSHER_HOST=127.0.0.1:1",
		"PUSHERCM_HTTP_TLS_CERT_FILE="+testcerts.Write(t, dir, "tls.crt", cert),
		"PUSHERCM_HTTP_TLS_KEY_FILE="+testcerts.Write(t, dir, "tls.key", key))
	s := proctest.StartCmd(t, cmd)
	if cn := servedCN(t, s.HTTPAddr, ca, nil); cn != "pusher-driver" {
		t.Fatalf("served %q", cn)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	resp, err := client.Post("https://"+s.HTTPAddr+"/pusher/auth", "application/x-www-form-urlencoded", strings.NewReader("socket_id=1.1&channel_name=private-x"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	// No bearer token: refused, by the auth endpoint, over TLS.
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST /pusher/auth without a token: %d", resp.StatusCode)
	}
}
