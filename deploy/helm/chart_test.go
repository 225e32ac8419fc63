package helm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// helmBin is the pinned helm, built once by TestMain.
var helmBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pushercm-helm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helmBin = filepath.Join(dir, "helm")
	build := exec.Command("go", "build", "-o", helmBin, "helm.sh/helm/v3/cmd/helm")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building helm:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// helm runs the pinned helm with a private home, so no repository or
// plugin of the machine's user takes part.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %v: %v\n%s%s", args, err, out.String(), errOut.String())
	}
	return out.String()
}

// strict decodes one manifest into out, refusing unknown fields.
func strict(doc []byte, out any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

// rendered is one `helm template` output, decoded.
type rendered struct {
	deployments     []appsv1.Deployment
	services        []corev1.Service
	configMaps      []corev1.ConfigMap
	secrets         []corev1.Secret
	serviceAccounts []corev1.ServiceAccount
	pdbs            []policyv1.PodDisruptionBudget
	serviceMonitors []monitoringv1.ServiceMonitor
}

// render runs helm lint and helm template with the values files, and
// decodes every manifest strictly into its API type.
func render(t *testing.T, values ...string) *rendered {
	t.Helper()
	var vf []string
	for _, v := range values {
		vf = append(vf, "-f", filepath.Join("testdata", v))
	}
	helm(t, append([]string{"lint", "--strict", "pushercm"}, vf...)...)
	out := helm(t, append([]string{"template", "pm", "pushercm", "--namespace", "realtime"}, vf...)...)
	r := &rendered{}
	for i, doc := range strings.Split(out, "\n---") {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("manifest %d: %v\n%s", i, err, doc)
		}
		if head.Kind == "" {
			if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "---")) != "" && !isComment(doc) {
				t.Fatalf("manifest %d has no kind:\n%s", i, doc)
			}
			continue
		}
		var err error
		switch head.APIVersion + "/" + head.Kind {
		case "apps/v1/Deployment":
			var d appsv1.Deployment
			err = strict([]byte(doc), &d)
			r.deployments = append(r.deployments, d)
		case "v1/Service":
			var s corev1.Service
			err = strict([]byte(doc), &s)
			r.services = append(r.services, s)
		case "v1/ConfigMap":
			var c corev1.ConfigMap
			err = strict([]byte(doc), &c)
			r.configMaps = append(r.configMaps, c)
		case "v1/Secret":
			var s corev1.Secret
			err = strict([]byte(doc), &s)
			r.secrets = append(r.secrets, s)
		case "v1/ServiceAccount":
			var s corev1.ServiceAccount
			err = strict([]byte(doc), &s)
			r.serviceAccounts = append(r.serviceAccounts, s)
		case "policy/v1/PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			err = strict([]byte(doc), &p)
			r.pdbs = append(r.pdbs, p)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			var s monitoringv1.ServiceMonitor
			err = strict([]byte(doc), &s)
			r.serviceMonitors = append(r.serviceMonitors, s)
		default:
			t.Fatalf("manifest %d: %s %s has no schema here; add its API type", i, head.APIVersion, head.Kind)
		}
		if err != nil {
			t.Fatalf("manifest %d (%s): %v\n%s", i, head.Kind, err, doc)
		}
	}
	if len(r.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(r.deployments))
	}
	return r
}

func isComment(doc string) bool {
	for _, l := range strings.Split(doc, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

func (r *rendered) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := r.deployments[0].Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers", len(cs))
	}
	return cs[0]
}

func envVar(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// checkCommon asserts what every rendering must hold: the probes, the
// security context, three Services and a PDB.
func checkCommon(t *testing.T, r *rendered, scheme corev1.URIScheme) {
	t.Helper()
	c := r.container(t)
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz", c.StartupProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "ops" || probe.HTTPGet.Scheme != scheme {
			t.Errorf("probe %+v, want %s %s on ops", probe, scheme, path)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v", sc)
	}
	pod := r.deployments[0].Spec.Template.Spec.SecurityContext
	if pod == nil || pod.RunAsUser == nil || *pod.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want a non-root runAsUser", pod)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resources %+v: want requests", c.Resources)
	}
	var ports []string
	for _, p := range c.Ports {
		ports = append(ports, fmt.Sprintf("%s:%d", p.Name, p.ContainerPort))
	}
	if want := []string{"grpc:50051", "http:6001", "ops:9464"}; !slices.Equal(ports, want) {
		t.Errorf("container ports %v, want %v", ports, want)
	}
	var svcs []string
	for _, s := range r.services {
		svcs = append(svcs, s.Name+"->"+s.Spec.Ports[0].TargetPort.String())
	}
	slices.Sort(svcs)
	if want := []string{"pm-pushercm-grpc->grpc", "pm-pushercm-ops->ops", "pm-pushercm-realtime->http"}; !slices.Equal(svcs, want) {
		t.Errorf("services %v, want %v", svcs, want)
	}
	if len(r.pdbs) != 1 {
		t.Errorf("%d PodDisruptionBudgets, want 1", len(r.pdbs))
	}
	if len(r.configMaps) != 1 || !strings.Contains(r.configMaps[0].Data["pushercm.yaml"], "shutdownTimeout:") {
		t.Errorf("ConfigMaps %+v: want one holding pushercm.yaml", r.configMaps)
	}
	if e := envVar(c, "PUSHERCM_CONFIG"); e == nil || e.Value != "/etc/pushercm/pushercm.yaml" {
		t.Errorf("PUSHERCM_CONFIG %+v", e)
	}
}

func TestChartDefaults(t *testing.T) {
	r := render(t)
	checkCommon(t, r, corev1.URISchemeHTTP)
	spec := r.deployments[0].Spec.Template.Spec
	// 2s preStop sleep + 5s shutdownDelay + 15s shutdownTimeout + 5s margin.
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g != 27 {
		t.Errorf("terminationGracePeriodSeconds %v, want 27", g)
	}
	c := r.container(t)
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 2 {
		t.Errorf("preStop %+v, want a 2s sleep", c.Lifecycle)
	}
	if e := envVar(c, "PUSHERCM_SHUTDOWN_DELAY"); e == nil || e.Value != "5s" {
		t.Errorf("PUSHERCM_SHUTDOWN_DELAY %+v", e)
	}
	if envVar(c, "PUSHERCM_REDIS_URL") != nil || envVar(c, "PUSHERCM_CLUSTER_NODE_ID") != nil {
		t.Error("PUSHERCM_REDIS_URL or PUSHERCM_CLUSTER_NODE_ID set without cluster mode")
	}
	// One pod: without Redis, embedded pods do not share their sockets.
	if n := r.deployments[0].Spec.Replicas; n == nil || *n != 1 {
		t.Errorf("replicas %v, want 1 without cluster mode", n)
	}
	if len(r.secrets) != 1 || len(r.serviceMonitors) != 0 {
		t.Errorf("%d Secrets, %d ServiceMonitors; want 1 and 0", len(r.secrets), len(r.serviceMonitors))
	}
}

func TestChartClusterMode(t *testing.T) {
	r := render(t, "cluster.yaml")
	checkCommon(t, r, corev1.URISchemeHTTP)
	if n := *r.deployments[0].Spec.Replicas; n != 3 {
		t.Errorf("replicas %d", n)
	}
	c := r.container(t)
	e := envVar(c, "PUSHERCM_REDIS_URL")
	if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "pm-pushercm" || e.ValueFrom.SecretKeyRef.Key != "redis-url" {
		t.Fatalf("PUSHERCM_REDIS_URL %+v: want the chart Secret's redis-url", e)
	}
	if p := envVar(c, "PUSHERCM_REDIS_PREFIX"); p == nil || p.Value != "mq" {
		t.Errorf("PUSHERCM_REDIS_PREFIX %+v", p)
	}
	checkNodeID(t, c)
	cfg := r.configMaps[0].Data["pushercm.yaml"]
	for _, want := range []string{"heartbeat: 1s", "nodeTtl: 6s", "maxConnections: 50000", "redisDown: unhealthy"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("pushercm.yaml lacks cluster setting %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "a-redis-password") {
		t.Errorf("the Redis password is in the ConfigMap:\n%s", cfg)
	}
	if len(r.secrets) != 1 || r.secrets[0].StringData["redis-url"] != "redis://:a-redis-password@redis-master:6379/0" || r.secrets[0].StringData["PUSHER_SECRET"] != "an-app-secret-of-the-deployment" || r.secrets[0].StringData["PUSHERCM_JWT_SERVICE_SECRET"] == "" {
		t.Errorf("secret %+v", r.secrets)
	}
	if !strings.Contains(r.configMaps[0].Data["pushercm.yaml"], "maxConnections: 20000") {
		t.Errorf("values.config not merged into pushercm.yaml:\n%s", r.configMaps[0].Data["pushercm.yaml"])
	}
}

// checkNodeID: in cluster mode each pod is a node named after the pod, from
// the downward API.
func checkNodeID(t *testing.T, c corev1.Container) {
	t.Helper()
	e := envVar(c, "PUSHERCM_CLUSTER_NODE_ID")
	if e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("PUSHERCM_CLUSTER_NODE_ID %+v: want the pod name (fieldRef metadata.name)", e)
	}
}

// TestChartRedisClusterAddrs: a Redis Cluster given by seed addresses alone
// (no URL, so no PUSHERCM_REDIS_URL and no Secret key for it).
func TestChartRedisClusterAddrs(t *testing.T) {
	r := render(t, "redis-cluster.yaml")
	checkCommon(t, r, corev1.URISchemeHTTP)
	c := r.container(t)
	if e := envVar(c, "PUSHERCM_REDIS_URL"); e != nil {
		t.Errorf("PUSHERCM_REDIS_URL %+v without redis.url", e)
	}
	if e := envVar(c, "PUSHERCM_REDIS_PREFIX"); e != nil {
		t.Errorf("PUSHERCM_REDIS_PREFIX %+v with an empty prefix (pushercm's default applies)", e)
	}
	checkNodeID(t, c)
	cfg := r.configMaps[0].Data["pushercm.yaml"]
	if !strings.Contains(cfg, "clusterAddrs:\n  - redis-0.redis:6379\n") {
		t.Errorf("pushercm.yaml lacks redis.clusterAddrs:\n%s", cfg)
	}
	if strings.Contains(cfg, "\ncluster:") {
		t.Errorf("pushercm.yaml sets cluster.* though no cluster value is set:\n%s", cfg)
	}
}

// TestChartPusherDriverReplicas: with the pusher driver Pusher is shared, so
// several replicas need no Redis.
func TestChartPusherDriverReplicas(t *testing.T) {
	r := render(t, "pusher-replicas.yaml")
	checkCommon(t, r, corev1.URISchemeHTTP)
	if n := *r.deployments[0].Spec.Replicas; n != 3 {
		t.Errorf("replicas %d", n)
	}
	if e := envVar(r.container(t), "PUSHERCM_CLUSTER_NODE_ID"); e != nil {
		t.Errorf("PUSHERCM_CLUSTER_NODE_ID %+v without cluster mode", e)
	}
}

func TestChartTLSAndServiceMonitor(t *testing.T) {
	r := render(t, "tls.yaml")
	checkCommon(t, r, corev1.URISchemeHTTPS)
	spec := r.deployments[0].Spec.Template.Spec
	// 0 preStop + 1s (500ms rounded up) + 90s + 5s.
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g != 96 {
		t.Errorf("terminationGracePeriodSeconds %v, want 96", g)
	}
	c := r.container(t)
	if c.Lifecycle != nil {
		t.Errorf("preStop %+v with preStopSleepSeconds 0", c.Lifecycle)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
		if strings.HasPrefix(m.Name, "tls-") && m.SubPath != "" {
			t.Errorf("%s mounted with subPath: renewals would never reach the pod", m.Name)
		}
	}
	for _, want := range []string{"tls-grpc", "tls-http", "tls-ops", "tls-grpc-client-ca"} {
		if mounts[want] == "" {
			t.Errorf("no %s mount", want)
		}
	}
	cfg := r.configMaps[0].Data["pushercm.yaml"]
	for _, want := range []string{"clientCAFile: /etc/pushercm/tls/grpc-client-ca/ca.crt", "certFile: /etc/pushercm/tls/http/tls.crt", "certFile: /etc/pushercm/tls/ops/tls.crt"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("pushercm.yaml lacks %q:\n%s", want, cfg)
		}
	}
	if len(r.secrets) != 0 {
		t.Errorf("%d Secrets rendered with existing Secrets named", len(r.secrets))
	}
	if e := envVar(c, "PUSHERCM_REDIS_URL"); e == nil || e.ValueFrom.SecretKeyRef.Name != "redis-credentials" || e.ValueFrom.SecretKeyRef.Key != "url" {
		t.Errorf("PUSHERCM_REDIS_URL %+v", e)
	}
	if len(r.serviceMonitors) != 1 {
		t.Fatalf("%d ServiceMonitors", len(r.serviceMonitors))
	}
	ep := r.serviceMonitors[0].Spec.Endpoints
	if len(ep) != 1 || ep[0].Port != "ops" || ep[0].Path != "/metrics" || ep[0].Scheme == nil || string(*ep[0].Scheme) != "https" {
		t.Errorf("ServiceMonitor endpoints %+v", ep)
	}
}

// TestChartRefusesBadValues: settings that cannot work fail the render
// with a message, instead of producing a pod that crashes.
func TestChartRefusesBadValues(t *testing.T) {
	for name, set := range map[string][]string{
		"bad duration":      {"shutdownTimeout=soon"},
		"redis without url": {"redis.enabled=true"},
		// Separate servers that answer OK to publishes they deliver to
		// their own sockets only.
		"replicas without redis":   {"replicaCount=2"},
		"redis with pusher driver": {"driver=pusher", "redis.enabled=true", "redis.url=redis://redis:6379"},
		"tls without secret":       {"tls.http.enabled=true"},
	} {
		args := []string{"template", "pm", "pushercm"}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		cmd := exec.Command(helmBin, args...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("%s: rendered:\n%s", name, out)
		}
	}
}
