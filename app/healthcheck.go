package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckCommand probes /readyz on the ops listener: the container
// image has no curl, so its HEALTHCHECK (and anyone's exec probe) runs the
// binary itself.
func healthcheckCommand() *cobra.Command {
	var (
		addr, path, caFile string
		useTLS, insecure   bool
		timeout            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the ops listener's /readyz answers 200, 1 otherwise",
		Long: `Probe the readiness endpoint of a running pushercm, for container
HEALTHCHECKs and exec probes in images without curl.

The address is --addr, else $PUSHERCM_HEALTHCHECK_ADDR, else the server's own
$PUSHERCM_OPS_ADDR (":9464" by default; an empty host means 127.0.0.1).
HTTPS is used with --tls, or when $PUSHERCM_OPS_TLS_CERT_FILE is set (the ops
listener then speaks TLS); the certificate is checked against --ca-file
($PUSHERCM_HEALTHCHECK_CA_FILE) or the system roots, unless
--insecure-skip-verify ($PUSHERCM_HEALTHCHECK_INSECURE_SKIP_VERIFY=true).`,
		Example: `  pushercm healthcheck
  pushercm healthcheck --addr 127.0.0.1:9464 --path /healthz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if !f.Changed("addr") {
				addr = firstEnv("PUSHERCM_HEALTHCHECK_ADDR", "PUSHERCM_OPS_ADDR")
				if addr == "" {
					addr = ":9464"
				}
			}
			if !f.Changed("tls") && os.Getenv("PUSHERCM_OPS_TLS_CERT_FILE") != "" {
				useTLS = true
			}
			if !f.Changed("ca-file") {
				caFile = os.Getenv("PUSHERCM_HEALTHCHECK_CA_FILE")
			}
			if !f.Changed("insecure-skip-verify") {
				insecure, _ = strconv.ParseBool(os.Getenv("PUSHERCM_HEALTHCHECK_INSECURE_SKIP_VERIFY"))
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return fmt.Errorf("--addr: %w", err)
			}
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			client := &http.Client{Timeout: timeout}
			scheme := "http"
			if useTLS {
				scheme = "https"
				tc := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // opt-in, for probing localhost
				if caFile != "" {
					pem, err := os.ReadFile(caFile)
					if err != nil {
						return err
					}
					tc.RootCAs = x509.NewCertPool()
					if !tc.RootCAs.AppendCertsFromPEM(pem) {
						return fmt.Errorf("%s: no PEM certificates", caFile)
					}
				}
				client.Transport = &http.Transport{TLSClientConfig: tc}
			}
			return probe(cmd.Context(), client, scheme+"://"+net.JoinHostPort(host, port)+path, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "", "ops listener address (default $PUSHERCM_HEALTHCHECK_ADDR, $PUSHERCM_OPS_ADDR or :9464)")
	f.StringVar(&path, "path", "/readyz", "path to probe")
	f.DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	f.BoolVar(&useTLS, "tls", false, "use HTTPS (default: on when $PUSHERCM_OPS_TLS_CERT_FILE is set)")
	f.StringVar(&caFile, "ca-file", "", "PEM CA bundle to verify the ops certificate (default $PUSHERCM_HEALTHCHECK_CA_FILE)")
	f.BoolVar(&insecure, "insecure-skip-verify", false, "do not verify the ops certificate")
	return cmd
}

var errNotReady = errors.New("not ready")

func probe(ctx context.Context, client *http.Client, url string, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotReady, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %d %s", errNotReady, url, resp.StatusCode, body)
	}
	_, err = fmt.Fprintf(out, "%s: %s", url, body)
	return err
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}
