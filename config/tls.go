package config

import (
	"errors"
	"fmt"
	"time"
)

// TLS serves a listener over TLS. Both files set: TLS; neither: plaintext
// (terminate TLS at the ingress or the mesh instead). The files are checked
// for replacement at most every ReloadInterval and a new pair is served from
// the next handshake on, with no restart.
type TLS struct {
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string `yaml:"certFile"`
	// KeyFile is the PEM private key of the leaf.
	KeyFile string `yaml:"keyFile"`
	// ReloadInterval is how often, at most, a handshake checks whether the
	// files changed (size and modification time). Default 5s; 0 checks on
	// every handshake.
	ReloadInterval time.Duration `yaml:"reloadInterval"`
}

// Enabled reports whether the listener speaks TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// GRPCTLS is the gRPC listener's TLS, with optional client certificates.
type GRPCTLS struct {
	TLS `yaml:",inline"`
	// ClientCAFile, when set, makes client certificates mandatory (mTLS):
	// only clients presenting a certificate signed by one of these PEM CAs
	// complete the handshake. Read at start. Needs CertFile and KeyFile.
	ClientCAFile string `yaml:"clientCAFile"`
}

// defaultTLSReloadInterval is the ReloadInterval of every listener.
const defaultTLSReloadInterval = 5 * time.Second

func (t TLS) validate(key string) error {
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: certFile and keyFile go together", key))
	}
	if t.ReloadInterval < 0 {
		errs = append(errs, fmt.Errorf("%s.reloadInterval: must not be negative", key))
	}
	return errors.Join(errs...)
}

func (c *Config) validateTLS() error {
	errs := []error{
		c.GRPC.TLS.validate("grpc.tls"),
		c.HTTP.TLS.validate("http.tls"),
		c.Ops.TLS.validate("ops.tls"),
	}
	if c.GRPC.TLS.ClientCAFile != "" && !c.GRPC.TLS.Enabled() {
		errs = append(errs, errors.New("grpc.tls.clientCAFile: needs grpc.tls.certFile and keyFile"))
	}
	return errors.Join(errs...)
}
