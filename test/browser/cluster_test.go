package browser_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/proctest"
	"github.com/milequest/pushercm/internal/redistest"
)

// binary is the pushercm binary, built once for the cluster test.
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		_ = os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

func buildBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "pushercm-browser-")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "pushercm")
		out, err := exec.Command("go", "build", "-o", binary.path, "github.com/milequest/pushercm/cmd/pushercm").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("building pushercm: %w\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// node is a running pushercm process of the cluster.
type node struct {
	id, grpc, http, ops string
}

// startNodes runs n `pushercm serve --dev` processes on loopback ports,
// sharing the Redis at redisAddr under prefix, with the console on and a
// short heartbeat, and waits until each serves and reached Redis.
func startNodes(t *testing.T, redisAddr, prefix string, n int) []*node {
	t.Helper()
	bin := buildBinary(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHERCM_") && !strings.HasPrefix(kv, "PUSHER_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	nodes := make([]*node, n)
	procs := make([]*proctest.Process, n)
	for i := range nodes {
		// Every key and pub/sub topic starts with the prefix, so short
		// node ids cannot meet another test's.
		id := fmt.Sprintf("node-%c", 'a'+i)
		procs[i] = proctest.Start(t, bin, append(env[:len(env):len(env)],
			"PUSHERCM_REDIS_URL=redis://"+redisAddr,
			"PUSHERCM_REDIS_PREFIX="+prefix,
			"PUSHERCM_CLUSTER_NODE_ID="+id,
			"PUSHERCM_CLUSTER_HEARTBEAT=250ms",
			"PUSHERCM_CLUSTER_NODE_TTL=1500ms",
			"PUSHERCM_OPS_CONSOLE=true",
		), "serve", "--dev", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
		nodes[i] = &node{id: id, grpc: procs[i].GRPCAddr, http: procs[i].HTTPAddr, ops: procs[i].OpsAddr}
	}
	for _, p := range procs {
		p.WaitLog(t, "connected to redis", 20*time.Second)
	}
	return nodes
}

// TestConsoleCluster: the console of one node of a three-node cluster
// lists every node, counts a socket held by another node in the cluster's
// figures and that node's own, and logs that node's events with its id.
func TestConsoleCluster(t *testing.T) {
	nodes := startNodes(t, redistest.Addr(t), redistest.Prefix(t), 3)
	tok, err := authz.Mint([]byte(config.DevServiceSecret), authz.MintOptions{
		Subject: "operator", TTL: time.Hour,
		Scopes: []string{interceptors.ScopeConnectionsRead, interceptors.ScopeConnectionsWrite, interceptors.ScopePublish},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every node is in the registry before the page looks.
	api := newGRPC(t, nodes[2].grpc, tok)
	pushertest.EventuallyWithin(t, waitFor, "every node listed", func() error {
		ctx, cancel := context.WithTimeout(api.ctx, waitFor)
		defer cancel()
		r, err := api.conn.ListNodes(ctx, &pushercmv1.ListNodesRequest{})
		if err == nil && len(r.GetNodes()) != len(nodes) {
			err = fmt.Errorf("ListNodes: %v", r.GetNodes())
		}
		return err
	})

	browser := newBrowser(t)
	ops := tab(t, browser)
	if err := chromedp.Do(ops, chromedp.Navigate("http://"+nodes[0].ops+"/console/")); err != nil {
		t.Fatal(err)
	}
	wait(t, ops, "the console to load", `document.body.dataset.ready === '1'`)
	eval[bool](t, ops, `document.getElementById('token').value = `+js(tok)+`, document.getElementById('token-form').requestSubmit(), true`)
	wait(t, ops, "the dashboard", `!document.getElementById('dash').hidden`)

	t.Run("the nodes panel lists every node", func(t *testing.T) {
		wait(t, ops, "the nodes panel", `!document.getElementById('nodes-card').hidden && document.body.dataset.cluster === '1'`)
		for _, nd := range nodes {
			wait(t, ops, "node "+nd.id+" with its addresses", `(() => { const tr = document.querySelector('#nodes tr[data-node=`+js(nd.id)+`]');
				return tr !== null && tr.textContent.includes(`+js(nd.grpc)+`) && tr.textContent.includes(`+js(nd.ops)+`); })()`)
		}
		if n := eval[int](t, ops, `document.querySelectorAll('#nodes tr[data-node]').length`); n != len(nodes) {
			t.Fatalf("%d nodes listed, want %d", n, len(nodes))
		}
		wait(t, ops, "this node marked as serving the console", `document.querySelector('#nodes tr[data-self="1"]')?.dataset.node === `+js(nodes[0].id)+` && document.getElementById('node-name').textContent === `+js(nodes[0].id))
		wait(t, ops, "the live event stream", `document.getElementById('watch-state').dataset.live === '1'`)
	})

	// A browser connects to node 1, not the node serving the console.
	ana := tab(t, browser)
	joinDemo(t, ana, "http://"+nodes[1].http, "ana")
	anaSocket := socketID(t, ana)

	t.Run("a socket on another node counts in the cluster's figures", func(t *testing.T) {
		wait(t, ops, "one connection, cluster-wide", `document.body.dataset.scope === '' && document.getElementById('stat-connections').textContent === '1' && document.querySelector('.scope-label').textContent.includes('cluster-wide')`)
		wait(t, ops, "the socket in the connections table", `document.querySelector('#connections tr[data-socket=`+js(anaSocket)+`]') !== null`)
		wait(t, ops, "node 1's heartbeat counting it", `document.querySelector('#nodes tr[data-node=`+js(nodes[1].id)+`] .conns')?.textContent === '1'`)
		// Node 1's own figures count it; node 0's do not.
		eval[bool](t, ops, `(() => { const s = document.getElementById('scope'); s.value = `+js(nodes[1].id)+`; s.dispatchEvent(new Event('change')); return true; })()`)
		wait(t, ops, "node 1's figures", `document.body.dataset.scope === `+js(nodes[1].id)+` && document.getElementById('stat-connections').textContent === '1' && document.getElementById('health-node').textContent === `+js(nodes[1].id))
		eval[bool](t, ops, `(() => { const s = document.getElementById('scope'); s.value = `+js(nodes[0].id)+`; s.dispatchEvent(new Event('change')); return true; })()`)
		wait(t, ops, "node 0's figures", `document.body.dataset.scope === `+js(nodes[0].id)+` && document.getElementById('stat-connections').textContent === '0'`)
		eval[bool](t, ops, `(() => { const s = document.getElementById('scope'); s.value = ''; s.dispatchEvent(new Event('change')); return true; })()`)
		wait(t, ops, "the cluster's figures again", `document.body.dataset.scope === '' && document.getElementById('stat-connections').textContent === '1'`)
	})

	t.Run("another node's events are in the log with its id", func(t *testing.T) {
		wait(t, ops, "node 1's connect in the log", `[...document.querySelectorAll('#event-log li[data-type="connected"]')].some(li => li.dataset.node === `+js(nodes[1].id)+` && li.textContent.includes(`+js(nodes[1].id)+`) && li.textContent.includes(`+js(anaSocket)+`))`)
		wait(t, ops, "node 1's subscribe in the log", `document.querySelector('#event-log li[data-type="subscribed"][data-node=`+js(nodes[1].id)+`][data-channel="presence-team-`+team+`"]') !== null`)
		// A publish through node 2 reaches Ana on node 1; the log shows it.
		api.send(t, "presence-team-"+team, "activity", `{"walker":"Chloe Hill","miles":3,"note":"Across the cluster"}`)
		wait(t, ana, "the activity in Ana's feed", `[...document.querySelectorAll('#feed li[data-kind="activity"]')].some(li => li.textContent.includes('Across the cluster'))`)
		wait(t, ops, "the publish in the log", `document.querySelector('#event-log li[data-type="published"][data-event="activity"][data-node]') !== null`)
	})

	wait(t, ops, "three samples in the charts", `Number(document.body.dataset.samples) >= 3`)
	screenshot(t, ops, "console-nodes.png", 1000)
}
