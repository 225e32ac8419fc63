package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/milequest/pushercm/ratelimit"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pushercm.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

const secrets = `
pusher: {appId: "1", key: k, secret: s}
jwt: {secret: "0123456789abcdef0123456789abcdef", service: {secret: "service-0123456789abcdef0123456789"}}
`

func TestPrecedence(t *testing.T) {
	file := writeFile(t, secrets+`
grpc: {addr: "127.0.0.1:1001"}
http: {addr: "127.0.0.1:2001"}
ops: {addr: "127.0.0.1:3001"}
log: {level: WARN}
`)
	tests := []struct {
		name                     string
		env                      map[string]string
		args                     []string
		wantGRPC, wantHTTP, want string // want = ops addr
		wantLevel                string
	}{
		{name: "file over defaults", env: map[string]string{"PUSHERCM_CONFIG": file},
			wantGRPC: "127.0.0.1:1001", wantHTTP: "127.0.0.1:2001", want: "127.0.0.1:3001", wantLevel: "WARN"},
		{name: "env over file", env: map[string]string{"PUSHERCM_CONFIG": file, "PUSHERCM_GRPC_ADDR": "127.0.0.1:1002", "PUSHERCM_LOG_LEVEL": "debug"},
			wantGRPC: "127.0.0.1:1002", wantHTTP: "127.0.0.1:2001", want: "127.0.0.1:3001", wantLevel: "DEBUG"},
		{name: "flags over env", env: map[string]string{"PUSHERCM_CONFIG": file, "PUSHERCM_GRPC_ADDR": "127.0.0.1:1002", "PUSHERCM_HTTP_ADDR": "127.0.0.1:2002"},
			args:     []string{"--grpc-addr", "127.0.0.1:1003", "--log-level", "ERROR"},
			wantGRPC: "127.0.0.1:1003", wantHTTP: "127.0.0.1:2002", want: "127.0.0.1:3001", wantLevel: "ERROR"},
		{name: "--config flag over PUSHERCM_CONFIG", env: map[string]string{"PUSHERCM_CONFIG": "/nonexistent.yaml"},
			args:     []string{"--config", file},
			wantGRPC: "127.0.0.1:1001", wantHTTP: "127.0.0.1:2001", want: "127.0.0.1:3001", wantLevel: "WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Load(Source{LookupEnv: envOf(tt.env), Flags: flags(t, tt.args...)})
			if err != nil {
				t.Fatal(err)
			}
			if l.GRPC.Addr != tt.wantGRPC || l.HTTP.Addr != tt.wantHTTP || l.Ops.Addr != tt.want || l.Log.Level != tt.wantLevel {
				t.Fatalf("got grpc=%s http=%s ops=%s level=%s", l.GRPC.Addr, l.HTTP.Addr, l.Ops.Addr, l.Log.Level)
			}
		})
	}
}

// shutdownDelay is 0 by default and set by the file, PUSHERCM_SHUTDOWN_DELAY
// and --shutdown-delay, later winning.
func TestShutdownDelaySources(t *testing.T) {
	file := writeFile(t, secrets+"shutdownDelay: 2s\n")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want time.Duration
	}{
		{name: "default", env: map[string]string{"PUSHERCM_DEV": "true"}, want: 0},
		{name: "file", env: map[string]string{"PUSHERCM_CONFIG": file}, want: 2 * time.Second},
		{name: "env over file", env: map[string]string{"PUSHERCM_CONFIG": file, "PUSHERCM_SHUTDOWN_DELAY": "5s"}, want: 5 * time.Second},
		{name: "flag over env", env: map[string]string{"PUSHERCM_CONFIG": file, "PUSHERCM_SHUTDOWN_DELAY": "5s"}, args: []string{"--shutdown-delay", "7s"}, want: 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Load(Source{LookupEnv: envOf(tc.env), Flags: flags(t, tc.args...)})
			if err != nil {
				t.Fatal(err)
			}
			if l.ShutdownDelay != tc.want {
				t.Fatalf("shutdownDelay %v, want %v", l.ShutdownDelay, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	l, err := Load(Source{LookupEnv: envOf(map[string]string{
		"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHERCM_JWT_SECRET": strings.Repeat("x", 32), "PUSHERCM_JWT_SERVICE_SECRET": strings.Repeat("s", 32),
	})})
	if err != nil {
		t.Fatal(err)
	}
	if l.Driver != DriverEmbedded || l.GRPC.Addr != ":50051" || l.HTTP.Addr != ":6001" || l.Ops.Addr != ":9464" {
		t.Fatalf("defaults: %+v", l.Config)
	}
	if l.Edge.MaxConnectionsPerIP != 256 || l.HTTP.MaxHeaderBytes != 32<<10 || l.Edge.MaxAPIBodyBytes != 1<<20 || len(l.HTTP.TrustedProxies) != 0 {
		t.Fatalf("limit defaults: %+v %+v", l.HTTP, l.Edge)
	}
	if l.Edge.MaxConnections != 5000 || l.Edge.SubscriptionsPerConnection != 100 || l.Edge.MaxPayloadBytes != 10240 {
		t.Fatalf("edge defaults: %+v", l.Edge)
	}
	if Bool(l.Edge.ClientEvents, false) || Bool(l.Edge.UserAuthentication, false) {
		t.Fatal("client events and sign-in must be off without --dev")
	}
	if l.Edge.PublishHoldMax != 500*time.Millisecond || l.Edge.CongestedPercent != 10 {
		t.Fatalf("backpressure defaults: %v %d", l.Edge.PublishHoldMax, l.Edge.CongestedPercent)
	}
	if len(l.DevFilled) != 0 {
		t.Fatalf("dev filled without --dev: %v", l.DevFilled)
	}
}

func TestAliasKey(t *testing.T) {
	env := map[string]string{"PUSHER_APP_ID": "1", "PUSHER_SECRET": "s", "PUSHERCM_JWT_SECRET": strings.Repeat("x", 32), "PUSHERCM_JWT_SERVICE_SECRET": strings.Repeat("s", 32),
		"PUSHER_KEY": "old", "NEXT_PUBLIC_PUSHER_KEY": "new"}
	l, err := Load(Source{LookupEnv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	if l.Pusher.Key != "new" {
		t.Fatalf("NEXT_PUBLIC_PUSHER_KEY must win over its alias, got %q", l.Pusher.Key)
	}
}

func TestDev(t *testing.T) {
	l, err := Load(Source{LookupEnv: envOf(nil), Flags: flags(t, "--dev")})
	if err != nil {
		t.Fatal(err)
	}
	if l.Pusher.AppID != DevAppID || l.Pusher.Key != DevAppKey || l.Pusher.Secret != DevAppSecret || l.JWT.Secret != DevJWTSecret || l.JWT.Service.Secret != DevServiceSecret {
		t.Fatalf("dev secrets: %+v %+v", l.Pusher, l.JWT)
	}
	if !Bool(l.Edge.ClientEvents, false) || !Bool(l.Edge.UserAuthentication, false) {
		t.Fatal("--dev must turn on client events and sign-in")
	}
	if len(l.DevFilled) == 0 {
		t.Fatal("DevFilled must say what was filled")
	}

	// Dev never overrides what is set.
	l, err = Load(Source{LookupEnv: envOf(map[string]string{"PUSHER_SECRET": "mine", "PUSHERCM_DEV": "true"})})
	if err != nil {
		t.Fatal(err)
	}
	if l.Pusher.Secret != "mine" {
		t.Fatalf("dev replaced a set secret: %q", l.Pusher.Secret)
	}
}

// Errors must name what is wrong: the key, variable or flag.
func TestInvalid(t *testing.T) {
	good := map[string]string{"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHERCM_JWT_SECRET": strings.Repeat("x", 32), "PUSHERCM_JWT_SERVICE_SECRET": strings.Repeat("s", 32)}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		file string
		args []string
		want string
	}{
		{name: "unknown key", env: good, file: "grpc: {listenAddress: ':1'}\n", want: "listenAddress"},
		{name: "unknown top-level key", env: good, file: "drivr: embedded\n", want: "drivr"},
		{name: "wrong type", env: good, file: "edge: {maxConnections: many}\n", want: "many"},
		{name: "bad duration", env: good, file: "shutdownTimeout: soon\n", want: "soon"},
		{name: "invalid value in file", env: good, file: "edge: {maxConnections: -1}\n", want: "edge.maxConnections"},
		{name: "bad driver env", env: with("PUSHERCM_DRIVER", "carrier-pigeon"), want: "driver"},
		{name: "bad log level env", env: with("PUSHERCM_LOG_LEVEL", "LOUD"), want: "PUSHERCM_LOG_LEVEL"},
		{name: "bad log level flag", env: good, args: []string{"--log-level", "LOUD"}, want: "--log-level"},
		{name: "bad address", env: with("PUSHERCM_GRPC_ADDR", "nowhere"), want: "grpc.addr"},
		{name: "missing app secret", env: with("PUSHER_SECRET", ""), want: "pusher.secret"},
		{name: "missing jwt key source", env: with("PUSHERCM_JWT_SECRET", ""), want: "jwt"},
		{name: "short jwt secret", env: with("PUSHERCM_JWT_SECRET", "short"), want: "jwt.secret"},
		{name: "unsupported algorithm", env: with("PUSHERCM_JWT_ALGORITHMS", "none"), want: "jwt.algorithms"},
		{name: "missing service key source", env: with("PUSHERCM_JWT_SERVICE_SECRET", ""), want: "jwt.service"},
		{name: "short service secret", env: with("PUSHERCM_JWT_SERVICE_SECRET", "short"), want: "jwt.service.secret"},
		{name: "service secret is the user secret", env: with("PUSHERCM_JWT_SERVICE_SECRET", strings.Repeat("x", 32)), want: "jwt.service.secret"},
		{name: "shared JWKS without audiences", env: with("PUSHERCM_JWT_SERVICE_SECRET", "", "PUSHERCM_JWT_JWKS_URL", "https://idp.example/jwks", "PUSHERCM_JWT_SERVICE_JWKS_URL", "https://idp.example/jwks"), want: "jwt.service.audience"},
		{name: "shared JWKS with overlapping audiences", env: with("PUSHERCM_JWT_SERVICE_SECRET", "", "PUSHERCM_JWT_JWKS_URL", "https://idp.example/jwks", "PUSHERCM_JWT_SERVICE_JWKS_URL", "https://idp.example/jwks",
			"PUSHERCM_JWT_AUDIENCE", "web,api", "PUSHERCM_JWT_SERVICE_AUDIENCE", "api"), want: "jwt.service.audience"},
		{name: "unsupported service algorithm", env: with("PUSHERCM_JWT_SERVICE_ALGORITHMS", "none"), want: "jwt.service.algorithms"},
		{name: "bad dev bool", env: with("PUSHERCM_DEV", "maybe"), want: "PUSHERCM_DEV"},
		{name: "bad webhook url", env: good, file: "edge: {webhooks: {urls: [ftp://x]}}\n", want: "edge.webhooks.urls[0]"},
		{name: "bad rate limit", env: good, file: "rateLimit: {limiters: {user: {burstLimit: -5}}}\n", want: "rateLimit"},
		{name: "negative stream workers", env: good, file: "grpc: {streamWorkers: -2}\n", want: "grpc.streamWorkers"},
		{name: "tiny header limit", env: good, file: "http: {maxHeaderBytes: 100}\n", want: "http.maxHeaderBytes"},
		{name: "zero api body limit", env: good, file: "edge: {maxApiBodyBytes: 0}\n", want: "edge.maxApiBodyBytes"},
		{name: "bad trusted proxy", env: good, file: "http: {trustedProxies: [10.0.0.0/40]}\n", want: "http.trustedProxies"},
		{name: "bad trusted proxy env", env: with("PUSHERCM_HTTP_TRUSTED_PROXIES", "10.0.0.1,proxy.local"), want: "http.trustedProxies"},
		{name: "negative per-ip connections", env: good, file: "edge: {maxConnectionsPerIp: -1}\n", want: "edge.maxConnectionsPerIp"},
		{name: "zero cache channels", env: good, file: "edge: {maxCacheChannels: 0}\n", want: "edge.maxCacheChannels"},
		{name: "too many stream workers", env: good, file: "grpc: {streamWorkers: 100001}\n", want: "grpc.streamWorkers"},
		{name: "bad shutdown delay env", env: with("PUSHERCM_SHUTDOWN_DELAY", "soon"), want: "PUSHERCM_SHUTDOWN_DELAY"},
		{name: "bad shutdown delay flag", env: good, args: []string{"--shutdown-delay", "soon"}, want: "--shutdown-delay"},
		{name: "negative shutdown delay", env: good, file: "shutdownDelay: -1s\n", want: "shutdownDelay"},
		{name: "negative publish hold", env: good, file: "edge: {publishHoldMax: -1s}\n", want: "edge.publishHoldMax"},
		{name: "bad publish hold env", env: with("PUSHERCM_EDGE_PUBLISH_HOLD_MAX", "long"), want: "PUSHERCM_EDGE_PUBLISH_HOLD_MAX"},
		{name: "zero congested percent", env: good, file: "edge: {congestedPercent: 0}\n", want: "edge.congestedPercent"},
		{name: "congested percent over 100", env: with("PUSHERCM_EDGE_CONGESTED_PERCENT", "101"), want: "edge.congestedPercent"},
		{name: "heap floor below -1", env: with("PUSHERCM_GC_HEAP_FLOOR_MIB", "-2"), want: "gc.heapFloorMiB"},
		{name: "heap floor too large", env: good, file: "gc: {heapFloorMiB: 70000}\n", want: "gc.heapFloorMiB"},
		{name: "headers below percent over 100", env: good, file: "rateLimit: {headersBelowPercent: 101}\n", want: "headersBelowPercent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if tt.file != "" {
				env = with()
				for k, v := range tt.env {
					env[k] = v
				}
				env["PUSHERCM_CONFIG"] = writeFile(t, tt.file)
			}
			_, err := Load(Source{LookupEnv: envOf(env), Flags: flags(t, tt.args...)})
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestFileValues(t *testing.T) {
	file := writeFile(t, `
pusher: {appId: "1", key: k, secret: s}
driver: embedded
shutdownTimeout: 3s
jwt: {secret: "0123456789abcdef0123456789abcdef", audience: [a, b], leeway: 5s, service: {secret: "service-0123456789abcdef0123456789", audience: [svc]}}
edge:
  maxConnections: 10
  activityTimeout: 30s
  webhooks: {urls: ["http://127.0.0.1:9/hook"], batchWindow: 50ms}
channelRules:
  rules:
    - name: everyone-private
      pattern: "private-open-*"
      permissions: [subscribe]
`)
	l, err := Load(Source{LookupEnv: envOf(map[string]string{"PUSHERCM_CONFIG": file})})
	if err != nil {
		t.Fatal(err)
	}
	if l.ShutdownTimeout != 3*time.Second || l.Edge.MaxConnections != 10 || l.Edge.ActivityTimeout != 30*time.Second ||
		len(l.JWT.Audience) != 2 || len(l.JWT.Service.Audience) != 1 || l.Edge.Webhooks.BatchWindow != 50*time.Millisecond || len(l.ChannelRules.Rules) != 1 {
		t.Fatalf("file values not applied: %+v", l.Config)
	}
	// Sections not in the file keep their defaults.
	if l.Edge.SubscriptionsPerConnection != 100 || l.GRPC.Addr != ":50051" {
		t.Fatalf("defaults lost: %+v", l.Config)
	}
}

func TestEnvNamesCoverDesign(t *testing.T) {
	names := strings.Join(envNames(), " ")
	for _, want := range []string{
		"PUSHER_APP_ID", "NEXT_PUBLIC_PUSHER_KEY", "PUSHER_KEY", "PUSHER_SECRET", "PUSHER_CLUSTER", "PUSHER_HOST", "PUSHER_SCHEME",
		"PUSHER_ENCRYPTION_MASTER_KEY_BASE64", "PUSHERCM_DRIVER", "PUSHERCM_GRPC_ADDR", "PUSHERCM_HTTP_ADDR", "PUSHERCM_OPS_ADDR",
		"PUSHERCM_LOG_LEVEL", "PUSHERCM_REDIS_URL", "PUSHERCM_JWT_SECRET", "PUSHERCM_JWT_PUBLIC_KEY_FILE", "PUSHERCM_JWT_JWKS_URL",
		"PUSHERCM_JWT_JWKS_FILE", "PUSHERCM_JWT_ISSUER", "PUSHERCM_JWT_AUDIENCE", "PUSHERCM_CONFIG",
		"PUSHERCM_JWT_SERVICE_SECRET", "PUSHERCM_JWT_SERVICE_PUBLIC_KEY_FILE", "PUSHERCM_JWT_SERVICE_JWKS_URL", "PUSHERCM_JWT_SERVICE_JWKS_FILE",
		"PUSHERCM_JWT_SERVICE_ISSUER", "PUSHERCM_JWT_SERVICE_AUDIENCE",
	} {
		if !strings.Contains(" "+names+" ", " "+want+" ") {
			t.Errorf("%s is not read", want)
		}
	}
}

func TestStreamWorkerCount(t *testing.T) {
	for _, tc := range []struct{ set, want int }{
		{0, max(64, 8*runtime.GOMAXPROCS(0))},
		{-1, 0},
		{3, 3},
	} {
		if got := (GRPC{StreamWorkers: tc.set}).StreamWorkerCount(); got != tc.want {
			t.Errorf("streamWorkers %d: %d workers, want %d", tc.set, got, tc.want)
		}
	}
}

// The development secrets are published; only --dev may use them.
func TestDevSecretsRefusedWithoutDev(t *testing.T) {
	good := map[string]string{"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHERCM_JWT_SECRET": strings.Repeat("x", 32), "PUSHERCM_JWT_SERVICE_SECRET": strings.Repeat("s", 32)}
	tests := []struct {
		name    string
		key     string // environment variable set to a dev value
		value   string
		wantKey string
	}{
		{name: "dev app secret", key: "PUSHER_SECRET", value: DevAppSecret, wantKey: "pusher.secret"},
		{name: "dev jwt secret", key: "PUSHERCM_JWT_SECRET", value: DevJWTSecret, wantKey: "jwt.secret"},
		{name: "dev service secret", key: "PUSHERCM_JWT_SERVICE_SECRET", value: DevServiceSecret, wantKey: "jwt.service.secret"},
		{name: "dev encryption master key", key: "PUSHER_ENCRYPTION_MASTER_KEY_BASE64", value: DevEncryptionMasterKeyBase64, wantKey: "pusher.encryptionMasterKeyBase64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range good {
				env[k] = v
			}
			env[tt.key] = tt.value
			_, err := Load(Source{LookupEnv: envOf(env)})
			if !errors.Is(err, ErrDevSecret) {
				t.Fatalf("Load without --dev: err = %v, want ErrDevSecret", err)
			}
			if !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("error %q does not name %s", err, tt.wantKey)
			}
			env["PUSHERCM_DEV"] = "true"
			if _, err := Load(Source{LookupEnv: envOf(env)}); err != nil {
				t.Fatalf("the same values with --dev: %v", err)
			}
		})
	}
}

// TestDecodeErrorsNameThePath: a bad type or an unknown key is reported by
// its YAML path, with a did-you-mean for a near miss, never by a Go type.
func TestDecodeErrorsNameThePath(t *testing.T) {
	tests := []struct {
		name, file string
		want       []string
	}{
		{name: "number", file: "edge:\n  maxConnections: lots\n",
			want: []string{`edge.maxConnections: want a number, got "lots" (line 2)`}},
		{name: "duration", file: "shutdownTimeout: soon\n",
			want: []string{`shutdownTimeout: want a duration like 30s or 5m, got "soon" (line 1)`}},
		{name: "bool", file: "grpc: {reflection: maybe}\n",
			want: []string{`grpc.reflection: want true or false, got "maybe" (line 1)`}},
		{name: "list", file: "http: {allowedOrigins: https://a}\n",
			want: []string{`http.allowedOrigins: want a list, got "https://a" (line 1)`}},
		{name: "inline section", file: "rateLimit: {limiters: {user: {burstLimit: many}}}\n",
			want: []string{`rateLimit.limiters.user.burstLimit: want a number, got "many" (line 1)`}},
		{name: "typo", file: "edge:\n  maxConections: 5\n",
			want: []string{`edge.maxConections: unknown setting (line 2); did you mean edge.maxConnections?`}},
		{name: "top-level typo", file: "drivr: embedded\n",
			want: []string{`drivr: unknown setting (line 1); did you mean driver?`}},
		{name: "in a list", file: "channelRules:\n  rules:\n    - {name: a, patern: 'private-*'}\n",
			want: []string{`channelRules.rules[0].patern: unknown setting (line 3); did you mean channelRules.rules[0].pattern?`}},
		{name: "no near key", file: "grpc: {listenAddress: ':1'}\n",
			want: []string{`grpc.listenAddress: unknown setting (line 1)`}},
		{name: "every error at once", file: "edge: {maxConnections: lots}\ndrivr: x\n",
			want: []string{`edge.maxConnections: want a number`, `drivr: unknown setting`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := Decode(strings.NewReader(tt.file), &c)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not say\n%s", err, w)
				}
			}
			for _, bad := range []string{"!!str", "config.", "unmarshal", "not found in type"} {
				if strings.Contains(err.Error(), bad) {
					t.Errorf("error names Go internals (%q):\n%s", bad, err)
				}
			}
			if tt.name == "no near key" && strings.Contains(err.Error(), "did you mean") {
				t.Errorf("suggested a key for a far miss:\n%s", err)
			}
		})
	}
}

// One identity provider may sign both kinds of token when the audiences keep
// them apart.
func TestServiceTrustSharedKeysWithDisjointAudiences(t *testing.T) {
	env := map[string]string{"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s",
		"PUSHERCM_JWT_JWKS_URL": "https://idp.example/jwks", "PUSHERCM_JWT_AUDIENCE": "web",
		"PUSHERCM_JWT_SERVICE_JWKS_URL": "https://idp.example/jwks", "PUSHERCM_JWT_SERVICE_AUDIENCE": "pushercm-api"}
	if _, err := Load(Source{LookupEnv: envOf(env)}); err != nil {
		t.Fatal(err)
	}
}

// TestEffectiveRedactsAndRoundTrips: the printed configuration hides every
// secret and is itself a valid configuration file.
func TestEffectiveRedactsAndRoundTrips(t *testing.T) {
	const (
		appSecret = "app-secret-value"
		jwtSecret = "jwt-secret-0123456789abcdef0123456789"
		svcSecret = "service-secret-0123456789abcdef012345"
		master    = "bWFzdGVyLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1"
	)
	env := map[string]string{
		"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": appSecret, "PUSHERCM_JWT_SECRET": jwtSecret,
		"PUSHERCM_JWT_SERVICE_SECRET": svcSecret, "PUSHERCM_JWT_SERVICE_JWKS_URL": "https://svc:jwks-pass@idp.example/jwks",
		"PUSHERCM_JWT_SERVICE_AUDIENCE": "pushercm-api", "PUSHERCM_JWT_AUDIENCE": "web",
		"PUSHER_ENCRYPTION_MASTER_KEY_BASE64": master, "PUSHERCM_REDIS_URL": "redis://user:redis-pass@127.0.0.1:6379/0",
	}
	l, err := Load(Source{LookupEnv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(l.Effective())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{appSecret, jwtSecret, svcSecret, master, "redis-pass", "jwks-pass"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("printed configuration holds a secret %q:\n%s", secret, out)
		}
	}
	back := Default()
	if err := Decode(strings.NewReader(string(out)), &back); err != nil {
		t.Fatalf("printed configuration does not read back: %v\n%s", err, out)
	}
	if back.Pusher.Secret != Redacted || back.Edge.MaxConnections != l.Edge.MaxConnections || !Bool(back.GRPC.Reflection, false) {
		t.Fatalf("read back %+v", back)
	}
	if l.Pusher.Secret != appSecret {
		t.Fatal("Effective changed the loaded configuration")
	}
}

// rateLimit.store (PUSHERCM_RATE_LIMIT_STORE) defaults to redis when a Redis
// is configured; redis without one is refused before anything starts.
func TestRateLimitStore(t *testing.T) {
	load := func(kv ...string) (*Loaded, error) {
		env := map[string]string{"PUSHERCM_DEV": "true"}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return Load(Source{LookupEnv: envOf(env)})
	}
	for _, tt := range []struct {
		name string
		env  []string
		want string
	}{
		{"no redis", nil, ratelimit.StoreMemory},
		{"redis", []string{"PUSHERCM_REDIS_URL", "redis://127.0.0.1:6379"}, ratelimit.StoreRedis},
		{"redis, memory chosen", []string{"PUSHERCM_REDIS_URL", "redis://127.0.0.1:6379", "PUSHERCM_RATE_LIMIT_STORE", "memory"}, ratelimit.StoreMemory},
	} {
		c, err := load(tt.env...)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := c.RateLimitStore(); got != tt.want {
			t.Errorf("%s: store %q, want %q", tt.name, got, tt.want)
		}
	}
	if _, err := load("PUSHERCM_RATE_LIMIT_STORE", "redis"); err == nil || !strings.Contains(err.Error(), "rateLimit.store") {
		t.Fatalf("store redis without redis.url: %v, want a rateLimit.store error", err)
	}
	if _, err := load("PUSHERCM_RATE_LIMIT_STORE", "disk"); err == nil || !strings.Contains(err.Error(), "rateLimit") {
		t.Fatalf("store disk: %v, want a rateLimit error", err)
	}
}

func TestPublishHoldFromEnv(t *testing.T) {
	env := map[string]string{"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHERCM_JWT_SECRET": strings.Repeat("x", 32), "PUSHERCM_JWT_SERVICE_SECRET": strings.Repeat("s", 32),
		"PUSHERCM_EDGE_PUBLISH_HOLD_MAX": "0s", "PUSHERCM_EDGE_CONGESTED_PERCENT": "25"}
	l, err := Load(Source{LookupEnv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	if l.Edge.PublishHoldMax != 0 || l.Edge.CongestedPercent != 25 {
		t.Fatalf("publishHoldMax %v congestedPercent %d, want 0 (never hold) and 25", l.Edge.PublishHoldMax, l.Edge.CongestedPercent)
	}
}

// TestHeapFloor: gc.heapFloorMiB resolves 0 to the default and -1 to off,
// and PUSHERCM_GC_HEAP_FLOOR_MIB sets it.
func TestHeapFloor(t *testing.T) {
	for _, tt := range []struct {
		mib  int
		want uint64
	}{{0, DefaultHeapFloorMiB << 20}, {-1, 0}, {128, 128 << 20}} {
		if got := (GC{HeapFloorMiB: tt.mib}).HeapFloorBytes(); got != tt.want {
			t.Errorf("heapFloorMiB %d: %d bytes, want %d", tt.mib, got, tt.want)
		}
	}
	c, err := Load(Source{LookupEnv: envOf(map[string]string{"PUSHERCM_DEV": "true", "PUSHERCM_GC_HEAP_FLOOR_MIB": "-1"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.GC.HeapFloorBytes() != 0 {
		t.Errorf("PUSHERCM_GC_HEAP_FLOOR_MIB=-1: floor %d, want off", c.GC.HeapFloorBytes())
	}
}
