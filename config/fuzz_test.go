package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// FuzzLoadFile feeds arbitrary YAML to the loader as PUSHERCM_CONFIG. Properties: it
// never panics; a file that loads has passed Validate, so its values are within the
// documented limits (checked again here, independently); and the loaded configuration
// written back as YAML loads to the same configuration.
//
//	go test -fuzz=FuzzLoadFile ./config
func FuzzLoadFile(f *testing.F) {
	// The file cases of TestInvalid and TestFileValues, and the example in the README.
	for _, s := range []string{
		secrets,
		secrets + "grpc: {listenAddress: ':1'}\n",
		secrets + "drivr: embedded\n",
		secrets + "edge: {maxConnections: many}\n",
		secrets + "shutdownTimeout: soon\n",
		secrets + "edge: {maxConnections: -1}\n",
		secrets + "edge: {webhooks: {urls: [ftp://x]}}\n",
		secrets + "rateLimit: {limiters: {user: {burstLimit: -5}}}\n",
		secrets + "grpc: {streamWorkers: -2}\n",
		secrets + "grpc: {streamWorkers: 100001}\n",
		secrets + "http: {allowedOrigins: [\"https://app.milequest.example\"]}\n",
		`
pusher: {appId: "1", key: k, secret: s}
driver: embedded
shutdownTimeout: 3s
jwt: {secret: "0123456789abcdef0123456789abcdef", audience: [a, b], leeway: 5s}
edge:
  maxConnections: 10
  activityTimeout: 30s
  webhooks: {urls: ["http://127.0.0.1:9/hook"], batchWindow: 50ms}
channelRules:
  rules:
    - name: everyone-private
      pattern: "private-open-*"
      permissions: [subscribe]
`,
		"dev: true\n",
		"a: &a [*a, *a]\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "pushercm.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Load(Source{LookupEnv: envOf(map[string]string{"PUSHERCM_CONFIG": path})})
		if err != nil {
			if l != nil {
				t.Fatalf("config with error %v", err)
			}
			return
		}
		checkLimits(t, &l.Config)

		out, err := yaml.Marshal(&l.Config)
		if err != nil {
			t.Fatalf("loaded configuration does not marshal: %v", err)
		}
		again := Default()
		if err := Decode(bytes.NewReader(out), &again); err != nil {
			t.Fatalf("written-back configuration does not decode: %v\n%s", err, out)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("written-back configuration is invalid: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(&again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the configuration (%v):\n%s\n---\n%s", err, out, out2)
		}
	})
}

// checkLimits restates Validate's documented bounds.
func checkLimits(t *testing.T, c *Config) {
	t.Helper()
	e := c.Edge
	for name, v := range map[string]int{
		"maxConnections": e.MaxConnections, "clientEventsPerSecond": e.ClientEventsPerSecond,
		"subscriptionsPerConnection": e.SubscriptionsPerConnection, "maxPayloadBytes": e.MaxPayloadBytes,
		"maxChannelsPerEvent": e.MaxChannelsPerEvent, "maxBatchSize": e.MaxBatchSize,
		"maxEventNameLength": e.MaxEventNameLength, "maxChannelNameLength": e.MaxChannelNameLength,
		"maxPresenceMembers": e.MaxPresenceMembers, "maxMemberInfoBytes": e.MaxMemberInfoBytes,
		"maxFrameBytes": e.MaxFrameBytes, "webhooks.queueSize": e.Webhooks.QueueSize,
		"grpc.maxRecvMsgBytes": c.GRPC.MaxRecvMsgBytes, "grpc.maxSendMsgBytes": c.GRPC.MaxSendMsgBytes,
	} {
		if v <= 0 {
			t.Fatalf("loaded %s = %d", name, v)
		}
	}
	if e.SubscriptionsPerUser < 0 || e.ConnectionsPerIPPerSecond < 0 || e.HTTPRequestsPerSecond < 0 {
		t.Fatalf("loaded a negative edge rate: %+v", e)
	}
	if e.ActivityTimeout < time.Second || e.PongTimeout < 100*time.Millisecond || e.CacheTTL <= 0 || c.ShutdownTimeout <= 0 ||
		e.Webhooks.RetryFor < 0 || e.Webhooks.BatchWindow < 0 || c.JWT.Leeway < 0 || c.JWT.Leeway > 5*time.Minute {
		t.Fatalf("loaded a duration out of bounds: edge %+v shutdown %s leeway %s", e, c.ShutdownTimeout, c.JWT.Leeway)
	}
	for _, u := range e.Webhooks.URLs {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			t.Fatalf("loaded webhook URL %q", u)
		}
	}
	for _, a := range []string{c.GRPC.Addr, c.HTTP.Addr, c.Ops.Addr} {
		if !strings.Contains(a, ":") {
			t.Fatalf("loaded address %q", a)
		}
	}
	if c.Driver != DriverEmbedded && c.Driver != DriverPusher {
		t.Fatalf("loaded driver %q", c.Driver)
	}
	if c.Pusher.AppID == "" || c.Pusher.Key == "" || c.Pusher.Secret == "" {
		t.Fatalf("loaded without app credentials: %+v", c.Pusher)
	}
	if c.JWT.Secret == "" && c.JWT.PublicKeyFile == "" && c.JWT.JWKSURL == "" && c.JWT.JWKSFile == "" || c.JWT.Secret != "" && len(c.JWT.Secret) < 32 {
		t.Fatal("loaded without a usable JWT key source")
	}
	if _, err := ParseLevel(c.Log.Level); err != nil || c.Log.Format != "text" && c.Log.Format != "json" {
		t.Fatalf("loaded log settings %+v", c.Log)
	}
}
