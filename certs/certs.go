package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Pair is one loaded certificate and key.
type Pair struct {
	// Cert is the parsed pair, with Leaf set.
	Cert *tls.Certificate
	// CertPEM and KeyPEM are the files' contents, for TLS stacks other than
	// crypto/tls (the realtime listener's).
	CertPEM, KeyPEM []byte
}

// stamp identifies a version of a file without reading it.
type stamp struct {
	size int64
	mod  time.Time
}

// Reloader holds the current Pair of a certificate and key file.
type Reloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger

	mu        sync.Mutex
	cur       *Pair
	certStamp stamp
	keyStamp  stamp
	checked   time.Time
}

// New loads certFile and keyFile (PEM) and returns a Reloader serving them.
// interval bounds how often the files are checked for a change (zero: on
// every handshake). log receives reload outcomes; nil discards them.
func New(certFile, keyFile string, interval time.Duration, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, interval: interval, log: log}
	cs, ks, err := r.stamps()
	if err != nil {
		return nil, err
	}
	p, err := load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cur, r.certStamp, r.keyStamp, r.checked = p, cs, ks, time.Now()
	return r, nil
}

func (r *Reloader) stamps() (cert, key stamp, err error) {
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return stamp{}, stamp{}, fmt.Errorf("tls certificate: %w", err)
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return stamp{}, stamp{}, fmt.Errorf("tls key: %w", err)
	}
	return stamp{ci.Size(), ci.ModTime()}, stamp{ki.Size(), ki.ModTime()}, nil
}

func load(certFile, keyFile string) (*Pair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls pair %s, %s: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls certificate %s: %w", certFile, err)
		}
	}
	return &Pair{Cert: &c, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// Current returns the pair to serve, reloading it first when the check
// interval has passed and the files changed. A failed reload keeps the
// previous pair.
func (r *Reloader) Current() *Pair {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) < r.interval {
		return r.cur
	}
	r.checked = now
	cs, ks, err := r.stamps()
	if err != nil {
		r.log.Error("tls files unreadable; serving the previous certificate", "cert", r.certFile, "error", err)
		return r.cur
	}
	if cs == r.certStamp && ks == r.keyStamp {
		return r.cur
	}
	p, err := load(r.certFile, r.keyFile)
	if err != nil {
		// Possibly caught between the writes of the two files: try again at
		// the next check, since the stamps are left as they were.
		r.log.Error("tls reload failed; serving the previous certificate", "cert", r.certFile, "error", err)
		return r.cur
	}
	r.cur, r.certStamp, r.keyStamp = p, cs, ks
	r.log.Info("tls certificate reloaded", "cert", r.certFile, "subject", p.Cert.Leaf.Subject.String(),
		"not_after", p.Cert.Leaf.NotAfter)
	return p
}

// GetCertificate is tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Current().Cert, nil
}

// ServerConfig is a server tls.Config (TLS 1.2 or later) serving r's pair.
// With clientCAs, clients must present a certificate signed by one of them.
func (r *Reloader) ServerConfig(clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
	if clientCAs != nil {
		c.ClientCAs = clientCAs
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// LoadCAs reads a PEM bundle of CA certificates.
func LoadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(file + ": no PEM certificates")
	}
	return pool, nil
}
