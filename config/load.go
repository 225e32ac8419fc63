package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// setting is one value settable from the environment and/or a flag.
type setting struct {
	env   []string // first set wins; aliases after the main name
	flag  string   // "" when there is no flag
	usage string
	set   func(c *Config, v string) error
}

func str(f func(c *Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *f(c) = v; return nil }
}

func list(f func(c *Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*f(c) = out
		return nil
	}
}

func boolean(f func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", v)
		}
		*f(c) = b
		return nil
	}
}

func duration(f func(c *Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 5s)", v)
		}
		*f(c) = d
		return nil
	}
}

func integer(f func(c *Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*f(c) = n
		return nil
	}
}

// settings is the table of environment variables and flags (DESIGN.md §2).
// Precedence: flags > environment > file > defaults.
var settings = []setting{
	{env: []string{"PUSHERCM_DEV"}, flag: "dev", usage: "development mode: well-known secrets, client events and sign-in on", set: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", v)
		}
		c.Dev = b
		return nil
	}},
	{env: []string{"PUSHERCM_DRIVER"}, flag: "driver", usage: "delivery driver: embedded or pusher", set: str(func(c *Config) *string { return &c.Driver })},
	{env: []string{"PUSHERCM_GRPC_ADDR"}, flag: "grpc-addr", usage: "gRPC listen address", set: str(func(c *Config) *string { return &c.GRPC.Addr })},
	{env: []string{"PUSHERCM_HTTP_ADDR"}, flag: "http-addr", usage: "realtime (WebSocket, Pusher HTTP API) listen address", set: str(func(c *Config) *string { return &c.HTTP.Addr })},
	{env: []string{"PUSHERCM_OPS_ADDR"}, flag: "ops-addr", usage: "operations (/metrics, /healthz, /readyz) listen address", set: str(func(c *Config) *string { return &c.Ops.Addr })},
	{env: []string{"PUSHERCM_LOG_LEVEL"}, flag: "log-level", usage: "DEBUG, INFO, WARN or ERROR", set: func(c *Config, v string) error {
		if _, err := ParseLevel(v); err != nil {
			return err
		}
		c.Log.Level = strings.ToUpper(v)
		return nil
	}},
	{env: []string{"PUSHERCM_LOG_FORMAT"}, flag: "log-format", usage: "text or json", set: str(func(c *Config) *string { return &c.Log.Format })},
	{env: []string{"PUSHERCM_HTTP_TRUSTED_PROXIES"}, set: list(func(c *Config) *[]string { return &c.HTTP.TrustedProxies })},
	{env: []string{"PUSHERCM_SHUTDOWN_DELAY"}, flag: "shutdown-delay", usage: "keep serving this long after turning NOT_SERVING, before closing the listeners (e.g. 5s)", set: duration(func(c *Config) *time.Duration { return &c.ShutdownDelay })},
	{env: []string{"PUSHERCM_GRPC_TLS_CERT_FILE"}, set: str(func(c *Config) *string { return &c.GRPC.TLS.CertFile })},
	{env: []string{"PUSHERCM_GRPC_TLS_KEY_FILE"}, set: str(func(c *Config) *string { return &c.GRPC.TLS.KeyFile })},
	{env: []string{"PUSHERCM_GRPC_TLS_CLIENT_CA_FILE"}, set: str(func(c *Config) *string { return &c.GRPC.TLS.ClientCAFile })},
	{env: []string{"PUSHERCM_HTTP_TLS_CERT_FILE"}, set: str(func(c *Config) *string { return &c.HTTP.TLS.CertFile })},
	{env: []string{"PUSHERCM_HTTP_TLS_KEY_FILE"}, set: str(func(c *Config) *string { return &c.HTTP.TLS.KeyFile })},
	{env: []string{"PUSHERCM_OPS_TLS_CERT_FILE"}, set: str(func(c *Config) *string { return &c.Ops.TLS.CertFile })},
	{env: []string{"PUSHERCM_OPS_TLS_KEY_FILE"}, set: str(func(c *Config) *string { return &c.Ops.TLS.KeyFile })},
	{env: []string{"PUSHERCM_REDIS_URL"}, set: str(func(c *Config) *string { return &c.Redis.URL })},
	{env: []string{"PUSHERCM_REDIS_CLUSTER_ADDRS"}, set: list(func(c *Config) *[]string { return &c.Redis.ClusterAddrs })},
	{env: []string{"PUSHERCM_REDIS_PREFIX"}, set: str(func(c *Config) *string { return &c.Redis.Prefix })},
	{env: []string{"PUSHERCM_CLUSTER_NODE_ID"}, set: str(func(c *Config) *string { return &c.Cluster.NodeID })},
	{env: []string{"PUSHERCM_CLUSTER_HEARTBEAT"}, set: duration(func(c *Config) *time.Duration { return &c.Cluster.Heartbeat })},
	{env: []string{"PUSHERCM_CLUSTER_NODE_TTL"}, set: duration(func(c *Config) *time.Duration { return &c.Cluster.NodeTTL })},
	{env: []string{"PUSHERCM_CLUSTER_MAX_CONNECTIONS"}, set: integer(func(c *Config) *int { return &c.Cluster.MaxConnections })},
	{env: []string{"PUSHERCM_EDGE_PUBLISH_HOLD_MAX"}, set: duration(func(c *Config) *time.Duration { return &c.Edge.PublishHoldMax })},
	{env: []string{"PUSHERCM_EDGE_CONGESTED_PERCENT"}, set: integer(func(c *Config) *int { return &c.Edge.CongestedPercent })},
	{env: []string{"PUSHERCM_GC_HEAP_FLOOR_MIB"}, set: integer(func(c *Config) *int { return &c.GC.HeapFloorMiB })},
	{env: []string{"PUSHERCM_RATE_LIMIT_STORE"}, set: str(func(c *Config) *string { return &c.RateLimit.Store })},
	{env: []string{"PUSHER_APP_ID"}, set: str(func(c *Config) *string { return &c.Pusher.AppID })},
	{env: []string{"NEXT_PUBLIC_PUSHER_KEY", "PUSHER_KEY"}, set: str(func(c *Config) *string { return &c.Pusher.Key })},
	{env: []string{"PUSHER_SECRET"}, set: str(func(c *Config) *string { return &c.Pusher.Secret })},
	{env: []string{"PUSHER_CLUSTER"}, set: str(func(c *Config) *string { return &c.Pusher.Cluster })},
	{env: []string{"PUSHER_HOST"}, set: str(func(c *Config) *string { return &c.Pusher.Host })},
	{env: []string{"PUSHER_SCHEME"}, set: str(func(c *Config) *string { return &c.Pusher.Scheme })},
	{env: []string{"PUSHER_ENCRYPTION_MASTER_KEY_BASE64"}, set: str(func(c *Config) *string { return &c.Pusher.EncryptionMasterKeyBase64 })},
	{env: []string{"PUSHERCM_DEMO_ENABLED"}, set: boolean(func(c *Config) *bool {
		if c.Demo.Enabled == nil {
			c.Demo.Enabled = new(bool)
		}
		return c.Demo.Enabled
	})},
	{env: []string{"PUSHERCM_OPS_CONSOLE"}, set: boolean(func(c *Config) *bool { return &c.Ops.Console })},
	{env: []string{"PUSHERCM_JWT_SECRET"}, set: str(func(c *Config) *string { return &c.JWT.Secret })},
	{env: []string{"PUSHERCM_JWT_PUBLIC_KEY_FILE"}, set: str(func(c *Config) *string { return &c.JWT.PublicKeyFile })},
	{env: []string{"PUSHERCM_JWT_JWKS_URL"}, set: str(func(c *Config) *string { return &c.JWT.JWKSURL })},
	{env: []string{"PUSHERCM_JWT_JWKS_FILE"}, set: str(func(c *Config) *string { return &c.JWT.JWKSFile })},
	{env: []string{"PUSHERCM_JWT_ISSUER"}, set: str(func(c *Config) *string { return &c.JWT.Issuer })},
	{env: []string{"PUSHERCM_JWT_AUDIENCE"}, set: list(func(c *Config) *[]string { return &c.JWT.Audience })},
	{env: []string{"PUSHERCM_JWT_ALGORITHMS"}, set: list(func(c *Config) *[]string { return &c.JWT.Algorithms })},
	{env: []string{"PUSHERCM_JWT_SERVICE_SECRET"}, set: str(func(c *Config) *string { return &c.JWT.Service.Secret })},
	{env: []string{"PUSHERCM_JWT_SERVICE_PUBLIC_KEY_FILE"}, set: str(func(c *Config) *string { return &c.JWT.Service.PublicKeyFile })},
	{env: []string{"PUSHERCM_JWT_SERVICE_JWKS_URL"}, set: str(func(c *Config) *string { return &c.JWT.Service.JWKSURL })},
	{env: []string{"PUSHERCM_JWT_SERVICE_JWKS_FILE"}, set: str(func(c *Config) *string { return &c.JWT.Service.JWKSFile })},
	{env: []string{"PUSHERCM_JWT_SERVICE_ISSUER"}, set: str(func(c *Config) *string { return &c.JWT.Service.Issuer })},
	{env: []string{"PUSHERCM_JWT_SERVICE_AUDIENCE"}, set: list(func(c *Config) *[]string { return &c.JWT.Service.Audience })},
	{env: []string{"PUSHERCM_JWT_SERVICE_ALGORITHMS"}, set: list(func(c *Config) *[]string { return &c.JWT.Service.Algorithms })},
}

// envNames lists every environment variable Load reads, for documentation
// and tests.
func envNames() []string {
	var out []string
	for _, s := range settings {
		out = append(out, s.env...)
	}
	return append(out, "PUSHERCM_CONFIG")
}

// RegisterFlags adds the configuration flags to fs: --config plus the
// settings that have a flag.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML configuration file (default $PUSHERCM_CONFIG)")
	for _, s := range settings {
		if s.flag == "" {
			continue
		}
		if s.flag == "dev" {
			fs.Bool("dev", false, s.usage)
			continue
		}
		fs.String(s.flag, "", s.usage)
	}
}

// Source says where Load reads from. Zero fields mean: the process
// environment, and no flags.
type Source struct {
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Flags registered with RegisterFlags; only flags set on the command
	// line apply.
	Flags *pflag.FlagSet
}

// Loaded is a loaded configuration and what Load did to it.
type Loaded struct {
	Config
	// File is the configuration file read, if any.
	File string
	// DevFilled lists the settings --dev filled in.
	DevFilled []string
}

// Load builds the configuration: defaults, then the YAML file named by
// --config or PUSHERCM_CONFIG, then the environment, then flags. It then
// applies --dev and validates. Errors name the key, variable or flag.
func Load(src Source) (*Loaded, error) {
	lookup := src.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	l := &Loaded{Config: Default()}

	file, _ := lookup("PUSHERCM_CONFIG")
	if src.Flags != nil {
		if f := src.Flags.Lookup("config"); f != nil && f.Changed {
			file = f.Value.String()
		}
	}
	if file != "" {
		if err := DecodeFile(file, &l.Config); err != nil {
			return nil, err
		}
		l.File = file
	}

	var errs []error
	for _, s := range settings {
		for _, name := range s.env {
			if v, ok := lookup(name); ok {
				if err := s.set(&l.Config, v); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
				}
				break
			}
		}
	}
	if src.Flags != nil {
		for _, s := range settings {
			if s.flag == "" {
				continue
			}
			f := src.Flags.Lookup(s.flag)
			if f == nil || !f.Changed {
				continue
			}
			if err := s.set(&l.Config, f.Value.String()); err != nil {
				errs = append(errs, fmt.Errorf("--%s: %w", s.flag, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	l.DevFilled = l.ApplyDev()
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return l, nil
}

// ParseLevel reads a log level name.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToUpper(s) {
	case "DEBUG":
		return slog.LevelDebug, nil
	case "INFO", "":
		return slog.LevelInfo, nil
	case "WARN", "WARNING":
		return slog.LevelWarn, nil
	case "ERROR":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not a log level (DEBUG, INFO, WARN, ERROR)", s)
}
