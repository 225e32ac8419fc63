package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/proctest"
	"github.com/milequest/pushercm/internal/redistest"
)

var metricName = regexp.MustCompile(`\bpushercm_[a-zA-Z0-9_]+`)

// namedMetrics returns every pushercm_* series name in the expressions of
// the Grafana dashboards and the Prometheus rules, with where it appears.
func namedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	root := repoRoot(t)
	names := map[string][]string{}
	add := func(where, expr string) {
		for _, n := range metricName.FindAllString(expr, -1) {
			if !slices.Contains(names[n], where) {
				names[n] = append(names[n], where)
			}
		}
	}
	dashboards, err := filepath.Glob(filepath.Join(root, "deploy", "grafana", "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards under deploy/grafana (%v)", err)
	}
	for _, f := range dashboards {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk(doc, "expr", func(v string) { add(filepath.Base(f), v) })
		walk(doc, "query", func(v string) { add(filepath.Base(f), v) })
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			add("alerts.yaml "+r.Alert+r.Record, r.Expr)
		}
	}
	if len(names) == 0 {
		t.Fatal("the dashboards and rules name no pushercm_* metric")
	}
	return names
}

// walk calls f with every string value of key anywhere in doc.
func walk(doc any, key string, f func(string)) {
	switch v := doc.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == key {
				f(s)
				continue
			}
			walk(x, key, f)
		}
	case []any:
		for _, x := range v {
			walk(x, key, f)
		}
	}
}

// TestDashboardAndAlertMetricsAreExported scrapes a running pushercm after
// the traffic that creates every series (a subscriber, a publish, a refused
// call) and checks that each metric the dashboard and the alert rules name
// is among them, so that no panel or alert watches a series that never
// exists. pushercm runs in cluster mode, on a real Redis (redistest: the
// machine's 127.0.0.1:6379, or one it starts), since the pushercm_cluster_*
// series the Cluster / Redis row and the Redis alerts read exist only there.
func TestDashboardAndAlertMetricsAreExported(t *testing.T) {
	names := namedMetrics(t)
	redisAddr, prefix := redistest.Addr(t), redistest.Prefix(t)
	cmd := exec.Command(staticBinary(t), "serve", "--dev",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	cmd.Env = append(proctest.CleanEnv(), "PUSHERCM_REDIS_URL=redis://"+redisAddr, "PUSHERCM_REDIS_PREFIX="+prefix,
		"PUSHERCM_CLUSTER_NODE_ID=metrics-check")
	s := proctest.StartCmd(t, cmd)
	s.WaitLog(t, `msg="connected to redis"`, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A subscriber, so the publish is written to a socket.
	c := pushertest.Dial(t, s.HTTPAddr, config.DevAppKey, config.DevAppSecret)
	c.Subscribe("metrics-check", "")

	gc, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = gc.Close() }()
	tok, err := authz.Mint([]byte(config.DevServiceSecret), authz.MintOptions{Subject: "metrics-check", Scopes: []string{"events:publish"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bc := pushercmv1.NewBroadcastServiceClient(gc)
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	if _, err := bc.SendEvent(authed, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
		Channels: []string{"metrics-check"}, Name: "tick", Payload: &pushercmv1.Event_Data{Data: "{}"}}}); err != nil {
		t.Fatal(err)
	}
	c.Expect("tick", "metrics-check")
	// A refused call, for the error series.
	if _, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{}); err == nil {
		t.Fatal("a call without a token succeeded")
	}

	pushertest.EventuallyWithin(t, 10*time.Second, "every metric named exported", func() error {
		exported := exportedNames(get(t, "http://"+s.OpsAddr+"/metrics"))
		var missing []string
		for n := range names {
			if !exported[n] {
				missing = append(missing, fmt.Sprintf("%s (named by %v)", n, names[n]))
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("not exported by pushercm: %s", strings.Join(missing, ", "))
		}
		return nil
	})
	// Label values the expressions match the code label against are values
	// pushercm exports (every code is a series from the start), so a
	// matcher spelled differently (Internal for INTERNAL) cannot hide.
	scrape := get(t, "http://"+s.OpsAddr+"/metrics")
	for _, code := range matchedCodes(t) {
		if !strings.Contains(scrape, `pushercm_rpcs_total{code="`+code+`"`) {
			t.Errorf("the dashboard or the rules match code %q, which pushercm_rpcs_total never has", code)
		}
	}

	// The node is in the cluster it reports: Redis up and, from its first
	// heartbeat on, itself the one live node.
	pushertest.EventuallyWithin(t, 15*time.Second, "pushercm_cluster_redis_up 1 and pushercm_cluster_nodes 1", func() error {
		lines := strings.Split(get(t, "http://"+s.OpsAddr+"/metrics"), "\n")
		if slices.Contains(lines, "pushercm_cluster_redis_up 1") && slices.Contains(lines, "pushercm_cluster_nodes 1") {
			return nil
		}
		var cluster []string
		for _, l := range lines {
			if strings.HasPrefix(l, "pushercm_cluster_") {
				cluster = append(cluster, l)
			}
		}
		return fmt.Errorf("/metrics has:\n%s", strings.Join(cluster, "\n"))
	})
}

var codeMatcher = regexp.MustCompile(`code=~?\\?"([A-Za-z_|]+)\\?"`)

// matchedCodes returns the values the dashboards and the rules match the
// code label against (code="X", code=~"X|Y").
func matchedCodes(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "grafana", "*.json"))
	files = append(files, filepath.Join(root, "deploy", "prometheus", "alerts.yaml"))
	var codes []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range codeMatcher.FindAllStringSubmatch(string(b), -1) {
			for _, c := range strings.Split(m[1], "|") {
				if !slices.Contains(codes, c) {
					codes = append(codes, c)
				}
			}
		}
	}
	if len(codes) == 0 {
		t.Fatal("no code matcher found in the dashboards and rules")
	}
	return codes
}

// exportedNames reads the series names of a Prometheus text exposition.
func exportedNames(text string) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}
