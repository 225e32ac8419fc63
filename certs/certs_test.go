package certs_test

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/milequest/pushercm/certs"
	"github.com/milequest/pushercm/internal/testcerts"
)

// handshakeCN dials ln and returns the common name the server presented.
func handshakeCN(t *testing.T, ln net.Listener, ca *testcerts.CA) string {
	t.Helper()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestReloadOnReplace: a pair replaced on disk is served by the next
// handshake; a broken replacement keeps the previous pair in service, and
// the repaired one is picked up after it.
func TestReloadOnReplace(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "test CA")
	c1, k1 := ca.Server(t, "first")
	certFile := testcerts.Write(t, dir, "tls.crt", c1)
	keyFile := testcerts.Write(t, dir, "tls.key", k1)
	r, err := certs.New(certFile, keyFile, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.ServerConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); _ = c.Close() }()
		}
	}()
	if cn := handshakeCN(t, ln, ca); cn != "first" {
		t.Fatalf("served %q, want first", cn)
	}

	// The certificate of a new pair with the old key: does not match.
	c2, k2 := ca.Server(t, "second")
	testcerts.Replace(t, dir, "tls.crt", c2)
	if cn := handshakeCN(t, ln, ca); cn != "first" {
		t.Fatalf("after a mismatched replacement served %q, want first", cn)
	}
	testcerts.Replace(t, dir, "tls.key", k2)
	if cn := handshakeCN(t, ln, ca); cn != "second" {
		t.Fatalf("after the replacement served %q, want second", cn)
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "test CA")
	c1, _ := ca.Server(t, "a")
	_, k2 := ca.Server(t, "b")
	certFile := testcerts.Write(t, dir, "tls.crt", c1)
	keyFile := testcerts.Write(t, dir, "tls.key", k2)
	for name, files := range map[string][2]string{
		"mismatched key": {certFile, keyFile},
		"missing cert":   {dir + "/nope.crt", keyFile},
		"not PEM":        {testcerts.Write(t, dir, "junk", []byte("junk")), keyFile},
	} {
		if _, err := certs.New(files[0], files[1], 0, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
