package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/milequest/pushercm/config"
)

// manifest is the part of a rendered Kubernetes object this test reads.
type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Env []struct {
						Name      string `yaml:"name"`
						Value     string `yaml:"value"`
						ValueFrom *struct {
							SecretKeyRef *struct {
								Name string `yaml:"name"`
								Key  string `yaml:"key"`
							} `yaml:"secretKeyRef"`
							FieldRef *struct {
								FieldPath string `yaml:"fieldPath"`
							} `yaml:"fieldRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					EnvFrom []struct {
						SecretRef struct {
							Name string `yaml:"name"`
						} `yaml:"secretRef"`
					} `yaml:"envFrom"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestChartConfigLoads renders the Helm chart (helm pinned in deploy/go.mod)
// and loads what a pod would get — the ConfigMap's pushercm.yaml as
// PUSHERCM_CONFIG, the container's environment with Secret references
// resolved from the rendered Secret — through pushercm's own loader, which
// refuses unknown keys and invalid values.
func TestChartConfigLoads(t *testing.T) {
	deployDir := filepath.Join(repoRoot(t), "deploy")
	cases := map[string][]string{
		"defaults with secrets": {"--set", "secrets.pusherAppId=1001", "--set", "secrets.pusherKey=k",
			"--set", "secrets.pusherSecret=s", "--set", "secrets.jwtSecret=a-jwt-secret-of-at-least-32-bytes-0123",
			"--set", "secrets.jwtServiceSecret=a-service-secret-of-at-least-32-bytes"},
		"cluster mode": {"-f", "helm/testdata/cluster.yaml"},
		"tls": {"-f", "helm/testdata/cluster.yaml", "--set", "tls.grpc.enabled=true", "--set", "tls.grpc.secretName=g",
			"--set", "tls.grpc.clientAuth=true", "--set", "tls.http.enabled=true", "--set", "tls.http.secretName=h",
			"--set", "tls.ops.enabled=true", "--set", "tls.ops.secretName=o"},
		"redis cluster addrs": {"-f", "helm/testdata/cluster.yaml", "--set", "redis.url=",
			"--set", "redis.clusterAddrs={redis-0.redis:6379,redis-1.redis:6379}", "--set", "redis.prefix="},
		"pusher driver replicas": {"-f", "helm/testdata/pusher-replicas.yaml"},
	}
	const podName = "pm-pushercm-5d8f7c9b4-x2k9q"
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "helm", "template", "pm", "helm/pushercm"}, args...)...)
			cmd.Dir = deployDir
			home := t.TempDir()
			cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, stderr.String())
			}
			var (
				cfgYAML string
				secrets = map[string]map[string]string{}
				env     = map[string]string{}
				deploy  *manifest
			)
			dec := yaml.NewDecoder(bytes.NewReader(out))
			for {
				var m manifest
				if err := dec.Decode(&m); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				switch m.Kind {
				case "ConfigMap":
					cfgYAML = m.Data["pushercm.yaml"]
				case "Secret":
					secrets[m.Metadata.Name] = m.StringData
				case "Deployment":
					deploy = &m
				}
			}
			if deploy == nil || cfgYAML == "" {
				t.Fatalf("no Deployment or no pushercm.yaml in:\n%s", out)
			}
			c := deploy.Spec.Template.Spec.Containers[0]
			for _, ef := range c.EnvFrom {
				for k, v := range secrets[ef.SecretRef.Name] {
					env[k] = v
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					// The downward API, as the kubelet would fill it.
					v, ok := map[string]string{"metadata.name": podName, "metadata.namespace": "default"}[e.ValueFrom.FieldRef.FieldPath]
					if !ok {
						t.Fatalf("%s refers to field %s, which this test does not fill", e.Name, e.ValueFrom.FieldRef.FieldPath)
					}
					env[e.Name] = v
					continue
				}
				if e.ValueFrom != nil {
					if e.ValueFrom.SecretKeyRef == nil {
						t.Fatalf("%s: valueFrom of an unknown kind", e.Name)
					}
					ref := e.ValueFrom.SecretKeyRef
					v, ok := secrets[ref.Name][ref.Key]
					if !ok {
						t.Fatalf("%s refers to %s/%s, which is not rendered", e.Name, ref.Name, ref.Key)
					}
					env[e.Name] = v
					continue
				}
				env[e.Name] = e.Value
			}
			file := filepath.Join(t.TempDir(), "pushercm.yaml")
			if err := os.WriteFile(file, []byte(cfgYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(env["PUSHERCM_CONFIG"], "/etc/pushercm/") {
				t.Fatalf("PUSHERCM_CONFIG %q", env["PUSHERCM_CONFIG"])
			}
			env["PUSHERCM_CONFIG"] = file
			l, err := config.Load(config.Source{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
			if err != nil {
				t.Fatalf("pushercm refuses the chart's configuration: %v\npushercm.yaml:\n%s", err, cfgYAML)
			}
			if l.Dev {
				t.Error("the chart turned dev mode on")
			}
			if name == "tls" && (!l.GRPC.TLS.Enabled() || l.GRPC.TLS.ClientCAFile == "" || !l.HTTP.TLS.Enabled() || !l.Ops.TLS.Enabled()) {
				t.Errorf("TLS not configured: %+v %+v %+v", l.GRPC.TLS, l.HTTP.TLS, l.Ops.TLS)
			}
			switch name {
			case "cluster mode", "tls":
				// Every cluster value of cluster.yaml arrives: the URL (with
				// its password) from the Secret, the prefix from the
				// environment, the node id from the pod name, cluster.* from
				// pushercm.yaml.
				if l.Redis.URL != "redis://:a-redis-password@redis-master:6379/0" || l.Redis.Prefix != "mq" {
					t.Errorf("redis %+v", l.Redis)
				}
				if c := l.Cluster; c.NodeID != podName || c.Heartbeat != time.Second || c.NodeTTL != 6*time.Second ||
					c.MaxConnections != 50000 || c.RedisDown != config.RedisDownUnhealthy {
					t.Errorf("cluster %+v", c)
				}
			case "redis cluster addrs":
				if l.Redis.URL != "" || !slices.Equal(l.Redis.ClusterAddrs, []string{"redis-0.redis:6379", "redis-1.redis:6379"}) || l.Cluster.NodeID != podName {
					t.Errorf("redis %+v, cluster %+v", l.Redis, l.Cluster)
				}
			default:
				if l.Redis.Enabled() || l.Cluster.NodeID != "" {
					t.Errorf("cluster mode without redis.enabled: redis %+v, cluster %+v", l.Redis, l.Cluster)
				}
			}
		})
	}
}
