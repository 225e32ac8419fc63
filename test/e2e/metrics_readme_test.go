package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
)

// readmeMetrics reads the README's Metrics table: metric name -> labels.
func readmeMetrics(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	row := regexp.MustCompile("^\\| `(pushercm_[a-z_]+)` \\| [a-z]+ \\|([^|]*)\\|")
	label := regexp.MustCompile("`([a-z_]+)`")
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			var labels []string
			for _, l := range label.FindAllStringSubmatch(m[2], -1) {
				labels = append(labels, l[1])
			}
			out[m[1]] = labels
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d metrics in the README table; is the table still there?", len(out))
	}
	return out
}

func scrapeAddr(t *testing.T, opsAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// labelValues lists the values of label name across f's series.
func labelValues(f *dto.MetricFamily, name string) []string {
	var out []string
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				out = append(out, l.GetValue())
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestMetricsMatchTheREADME scrapes /metrics of the running binary and
// holds it against the README's Metrics table both ways: every documented
// metric exists with the documented labels, and no pushercm_ metric is
// undocumented. Before any traffic, the labelled counters a dashboard
// plots already exist at zero, with one casing of gRPC codes.
func TestMetricsMatchTheREADME(t *testing.T) {
	documented := readmeMetrics(t)
	// A cluster of one, so that the cluster's series are there too.
	s := StartServer(t, []string{"PUSHERCM_REDIS_URL=redis://" + redistest.Addr(t), "PUSHERCM_REDIS_PREFIX=" + redistest.Prefix(t)})
	s.WaitLog(t, "connected to redis", 20*time.Second)

	start := scrapeAddr(t, s.OpsAddr)
	codes := labelValues(start["pushercm_rpcs_total"], "code")
	if len(codes) != 17 || !slices.Contains(codes, "PERMISSION_DENIED") || !slices.Contains(codes, "UNAUTHENTICATED") {
		t.Errorf("pushercm_rpcs_total codes at start: %v, want all 17 in upper snake case", codes)
	}
	for _, reason := range []string{"AUTHENTICATION_FAILED", "AUTHORIZATION_FAILED", "RATE_LIMITED", "INVALID_ARGUMENT", "NOT_FOUND", "CONNECTION_FAILED", "MESSAGE_DELIVERY_FAILED", "CONNECTION_POOL_EXHAUSTED"} {
		if !slices.Contains(labelValues(start["pushercm_errors_total"], "reason"), reason) {
			t.Errorf("pushercm_errors_total{reason=%q} missing at start", reason)
		}
	}
	for _, limiter := range []string{"principal", "user", "method", "client_events"} {
		if !slices.Contains(labelValues(start["pushercm_rate_limited_total"], "limiter"), limiter) {
			t.Errorf("pushercm_rate_limited_total{limiter=%q} missing at start", limiter)
		}
	}

	// Traffic that makes the rest appear: a subscriber, a publish that
	// reaches it, a channel authorization, a refused call.
	sub := pushertest.Dial(t, s.HTTPAddr, config.DevAppKey, config.DevAppSecret)
	sub.Subscribe("metrics-room", "")
	conn := dial(t, s.GRPCAddr)
	svc := pushertest.Mint(t, config.DevServiceSecret, authz.MintOptions{Subject: "svc", Scopes: []string{"events:publish", "channels:authorize"}})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+svc)
	if _, err := pushercmv1.NewBroadcastServiceClient(conn).SendEvent(ctx, &pushercmv1.SendEventRequest{
		Event: &pushercmv1.Event{Channels: []string{"metrics-room"}, Name: "tick", Payload: &pushercmv1.Event_Data{Data: "{}"}},
	}); err != nil {
		t.Fatal(err)
	}
	sub.Expect("tick", "metrics-room")
	user := pushertest.Mint(t, config.DevJWTSecret, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})
	if _, err := pushercmv1.NewAuthServiceClient(conn).AuthorizeChannel(ctx, &pushercmv1.AuthorizeChannelRequest{
		SocketId: sub.SocketID, ChannelName: "private-team-t1", Token: user,
	}); err != nil {
		t.Fatal(err)
	}

	var fams map[string]*dto.MetricFamily
	pushertest.Eventually(t, "every documented metric on /metrics", func() error {
		fams = scrapeAddr(t, s.OpsAddr)
		var missing []string
		for name := range documented {
			if fams[name] == nil {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("documented in the README but not on /metrics: %v", missing)
		}
		return nil
	})
	for name, f := range fams {
		if !strings.HasPrefix(name, "pushercm_") {
			continue
		}
		labels, ok := documented[name]
		if !ok {
			t.Errorf("%s is on /metrics but not in the README's Metrics table", name)
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) && l.GetName() != "le" {
					t.Errorf("%s has label %s, README documents %v", name, l.GetName(), labels)
				}
			}
		}
	}
	for _, code := range labelValues(fams["pushercm_rpcs_total"], "code") {
		if code != strings.ToUpper(code) {
			t.Errorf("pushercm_rpcs_total{code=%q}: not upper snake case", code)
		}
	}
}
