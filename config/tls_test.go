package config

import (
	"strings"
	"testing"
	"time"
)

func TestTLSSettings(t *testing.T) {
	base := map[string]string{"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHERCM_JWT_SECRET": strings.Repeat("x", 32), "PUSHERCM_JWT_SERVICE_SECRET": strings.Repeat("s", 32)}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	t.Run("environment and file", func(t *testing.T) {
		env := with(
			"PUSHERCM_GRPC_TLS_CERT_FILE", "/g.crt", "PUSHERCM_GRPC_TLS_KEY_FILE", "/g.key", "PUSHERCM_GRPC_TLS_CLIENT_CA_FILE", "/ca.crt",
			"PUSHERCM_HTTP_TLS_CERT_FILE", "/h.crt", "PUSHERCM_HTTP_TLS_KEY_FILE", "/h.key",
			"PUSHERCM_OPS_TLS_CERT_FILE", "/o.crt", "PUSHERCM_OPS_TLS_KEY_FILE", "/o.key",
			"PUSHERCM_CONFIG", writeFile(t, "grpc: {tls: {reloadInterval: 0s}}\nops: {tls: {reloadInterval: 1m}}\n"),
		)
		l, err := Load(Source{LookupEnv: envOf(env)})
		if err != nil {
			t.Fatal(err)
		}
		if g := l.GRPC.TLS; g.CertFile != "/g.crt" || g.KeyFile != "/g.key" || g.ClientCAFile != "/ca.crt" || g.ReloadInterval != 0 {
			t.Errorf("grpc.tls %+v", g)
		}
		if h := l.HTTP.TLS; h.CertFile != "/h.crt" || h.KeyFile != "/h.key" || h.ReloadInterval != defaultTLSReloadInterval {
			t.Errorf("http.tls %+v", h)
		}
		if o := l.Ops.TLS; o.CertFile != "/o.crt" || o.KeyFile != "/o.key" || o.ReloadInterval != time.Minute {
			t.Errorf("ops.tls %+v", o)
		}
	})

	t.Run("off by default", func(t *testing.T) {
		l, err := Load(Source{LookupEnv: envOf(base)})
		if err != nil {
			t.Fatal(err)
		}
		if l.GRPC.TLS.Enabled() || l.HTTP.TLS.Enabled() || l.Ops.TLS.Enabled() {
			t.Errorf("TLS on by default: %+v %+v %+v", l.GRPC.TLS, l.HTTP.TLS, l.Ops.TLS)
		}
	})

	for _, tt := range []struct {
		name, want string
		env        map[string]string
	}{
		{"certificate without key", "http.tls", with("PUSHERCM_HTTP_TLS_CERT_FILE", "/h.crt")},
		{"key without certificate", "ops.tls", with("PUSHERCM_OPS_TLS_KEY_FILE", "/o.key")},
		{"client CA without TLS", "grpc.tls.clientCAFile", with("PUSHERCM_GRPC_TLS_CLIENT_CA_FILE", "/ca.crt")},
		{"negative reload interval", "grpc.tls.reloadInterval", with("PUSHERCM_CONFIG", writeFile(t, "grpc: {tls: {reloadInterval: -1s}}\n"))},
		{"unknown key", "clientCaFile", with("PUSHERCM_CONFIG", writeFile(t, "http: {tls: {clientCaFile: /x}}\n"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(Source{LookupEnv: envOf(tt.env)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}
