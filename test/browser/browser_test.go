package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
)

// chromiumPath is Debian's chromium; `make browser-deps` installs it.
const chromiumPath = "/usr/bin/chromium"

// waitFor bounds each wait for a condition on a page.
const waitFor = 15 * time.Second

const team = "trailblazers"

// newBrowser starts a headless chromium with a fresh profile. The flags
// keep it from reaching for the network it does not have (it would stall
// on refused connections otherwise).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Fatalf("no chromium at %s: run `make browser-deps` (apt-get install -y chromium): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// tab opens a tab in a browser context of its own (its own storage and
// cookies, like another person's browser).
func tab(t *testing.T, browser context.Context, opts ...chromedp.ContextOption) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, append(opts, chromedp.WithNewBrowserContext())...)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// wait blocks until the JavaScript expression is truthy on the page, and
// fails the test with what after waitFor.
func wait(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitFor))); err != nil {
		t.Fatalf("waiting for %s: %v\npage says: %s", what, err, pageText(ctx))
	}
}

// eval runs JavaScript on the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

func pageText(ctx context.Context) string {
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return err.Error()
	}
	if len(s) > 1500 {
		s = s[:1500] + "…"
	}
	return s
}

// screenshot writes a PNG of the page's top height CSS pixels, rendered at
// 0.75 device pixels per CSS pixel to keep the files small.
func screenshot(t *testing.T, ctx context.Context, name string, height int64) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1200, height, chromedp.EmulateScale(0.75))); err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("PUSHERCM_SCREENSHOT_DIR")
	if dir == "" {
		dir = "screenshots"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// frames records the WebSocket text frames a tab receives (CDP
// Network.webSocketFrameReceived).
type frames struct {
	mu  sync.Mutex
	all []string
}

func (f *frames) listen(ev any) {
	if e, ok := ev.(*network.EventWebSocketFrameReceived); ok && e.Response != nil {
		f.mu.Lock()
		f.all = append(f.all, string(e.Response.PayloadData))
		f.mu.Unlock()
	}
}

func (f *frames) find(sub string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, s := range f.all {
		if strings.Contains(s, sub) {
			out = append(out, s)
		}
	}
	return out
}

// grpcAPI is a gRPC client of the app with a service token.
type grpcAPI struct {
	bcast pushercmv1.BroadcastServiceClient
	conn  pushercmv1.ConnectionServiceClient
	ctx   context.Context
}

func newGRPC(t *testing.T, addr, token string) *grpcAPI {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &grpcAPI{
		bcast: pushercmv1.NewBroadcastServiceClient(cc),
		conn:  pushercmv1.NewConnectionServiceClient(cc),
		ctx:   metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token),
	}
}

func (g *grpcAPI) send(t *testing.T, channel, name, jsonData string) *pushercmv1.SendEventResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(g.ctx, waitFor)
	defer cancel()
	r, err := g.bcast.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
		Channels: []string{channel}, Name: name, Payload: &pushercmv1.Event_Data{Data: jsonData},
	}})
	if err != nil {
		t.Fatalf("SendEvent %s: %v", channel, err)
	}
	return r
}

// foreignToken is a well-formed service token signed with a key the server
// does not trust.
func foreignToken(t *testing.T, secret string, scopes ...string) string {
	t.Helper()
	tok, err := authz.Mint([]byte(secret), authz.MintOptions{Subject: "browser-test", Scopes: scopes, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// joinDemo opens the demo as user and waits until the page is on the team
// channels, connected.
func joinDemo(t *testing.T, ctx context.Context, base, user string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/demo/?user="+user+"&team="+team)); err != nil {
		t.Fatal(err)
	}
	wait(t, ctx, "the demo page to load", `document.body.dataset.ready === '1'`)
	eval[bool](t, ctx, `document.getElementById('join').click(), true`)
	wait(t, ctx, user+" connected", `document.getElementById('conn').dataset.state === 'connected'`)
	wait(t, ctx, user+" on the presence channel", `document.querySelector('#members .avatar.me[data-user=`+js(user)+`]') !== null`)
}

func socketID(t *testing.T, ctx context.Context) string {
	t.Helper()
	return eval[string](t, ctx, `document.getElementById('socket').dataset.socket`)
}

// TestDemoAndConsole runs both pages against one app: two teammates on
// the demo, then an operator on the console watching and acting on them.
func TestDemoAndConsole(t *testing.T) {
	a := apptest.Start(t, func(c *config.Config) {
		c.Ops.Console = true
		c.Log.Level = "INFO"
	})
	base := "http://" + a.HTTPAddr()
	opsBase := "http://" + a.OpsAddr()
	api := newGRPC(t, a.GRPCAddr(), a.Token(t, "browser-test", interceptors.ScopePublish, interceptors.ScopeConnectionsRead))

	browser := newBrowser(t)
	anaFrames := &frames{}
	ana := tab(t, browser, chromedp.WithListener(anaFrames.listen))
	if _, err := chromedp.Run(ana, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	ben := tab(t, browser)

	t.Run("teammates see each other appear", func(t *testing.T) {
		joinDemo(t, ana, base, "ana")
		joinDemo(t, ben, base, "ben")
		wait(t, ana, "Ben's avatar on Ana's page", `document.querySelector('#members .avatar[data-user="ben"]') !== null`)
		wait(t, ben, "Ana's avatar on Ben's page", `document.querySelector('#members .avatar[data-user="ana"]') !== null`)
		// The name comes from the token's name claim.
		if got := eval[string](t, ana, `document.querySelector('#members .avatar[data-user="ben"] .name').textContent`); got != "Ben Strider" {
			t.Fatalf("Ben's avatar says %q", got)
		}
	})

	t.Run("an event sent over gRPC shows in both feeds", func(t *testing.T) {
		r := api.send(t, "presence-team-"+team, "activity", `{"walker":"Chloe Hill","miles":4.5,"note":"Sunrise ridge"}`)
		if r.GetDeliveredTo() != 2 {
			t.Fatalf("delivered to %d sockets, want 2", r.GetDeliveredTo())
		}
		for name, ctx := range map[string]context.Context{"ana": ana, "ben": ben} {
			wait(t, ctx, "the activity in "+name+"'s feed", `[...document.querySelectorAll('#feed li[data-kind="activity"]')].some(li => li.textContent.includes('Sunrise ridge'))`)
		}
	})

	t.Run("a cheer reaches the teammate", func(t *testing.T) {
		eval[bool](t, ben, `document.querySelector('#members .avatar[data-user="ana"] button.cheer').click(), true`)
		wait(t, ana, "Ben's cheer on Ana's page", `[...document.querySelectorAll('#cheers li[data-kind="received"]')].some(li => li.dataset.from === 'ben' && li.textContent.includes('Ben Strider cheered you'))`)
		wait(t, ben, "Ben's page saying the cheer went", `document.querySelector('#cheers li[data-kind="sent"][data-to="ana"]') !== null`)
	})

	t.Run("SendToUser reaches only its user", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(api.ctx, waitFor)
		defer cancel()
		r, err := api.bcast.SendToUser(ctx, &pushercmv1.SendToUserRequest{UserId: "ana", Name: "notification", Payload: &pushercmv1.SendToUserRequest_Data{Data: `{"text":"You reached 100 miles!"}`}})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetDeliveredTo() != 1 {
			t.Fatalf("delivered to %d sockets, want 1", r.GetDeliveredTo())
		}
		wait(t, ana, "the notification on Ana's page", `[...document.querySelectorAll('#notifications li[data-kind="notification"]')].some(li => li.textContent.includes('100 miles'))`)
		// Delivered to one socket, Ana's: Ben's page has none.
		if n := eval[int](t, ben, `document.querySelectorAll('#notifications li[data-kind="notification"]').length`); n != 0 {
			t.Fatalf("Ben's page shows %d notifications", n)
		}
	})

	t.Run("the encrypted note is readable on the page and ciphertext on the wire", func(t *testing.T) {
		const note = "Meet at the trailhead at 7"
		api.send(t, "private-encrypted-team-"+team, "team-note", `{"text":"`+note+`"}`)
		wait(t, ana, "the decrypted note on Ana's page", `[...document.querySelectorAll('#secrets li[data-kind="note"]')].some(li => li.textContent.includes(`+js(note)+`))`)
		got := anaFrames.find(`"team-note"`)
		if len(got) != 1 {
			t.Fatalf("%d team-note frames on Ana's socket, want 1: %v", len(got), got)
		}
		if strings.Contains(got[0], "trailhead") || !strings.Contains(got[0], "ciphertext") || !strings.Contains(got[0], "nonce") {
			t.Fatalf("the frame is not ciphertext: %s", got[0])
		}
		if len(anaFrames.find("Sunrise ridge")) == 0 {
			t.Fatal("frame capture saw no plain activity frame: it is not recording")
		}
	})

	screenshot(t, ana, "demo.png", 830)

	ops := tab(t, browser)
	t.Run("the console refuses a wrong token", func(t *testing.T) {
		if err := chromedp.Do(ops, chromedp.Navigate(opsBase+"/console/")); err != nil {
			t.Fatal(err)
		}
		wait(t, ops, "the console to load", `document.body.dataset.ready === '1'`)
		wrong := foreignToken(t, "not-the-server-secret-0123456789abcdef", interceptors.ScopeConnectionsRead)
		eval[bool](t, ops, `document.getElementById('token').value = `+js(wrong)+`, document.getElementById('token-form').requestSubmit(), true`)
		wait(t, ops, "the refusal", `!document.getElementById('token-error').hidden && document.getElementById('token-error').textContent.includes('refused')`)
		if !eval[bool](t, ops, `document.getElementById('dash').hidden`) {
			t.Fatal("the dashboard is shown after a refused token")
		}
		// A token without connections:read is refused too.
		pubOnly := a.Token(t, "publisher", interceptors.ScopePublish)
		eval[bool](t, ops, `document.getElementById('token').value = `+js(pubOnly)+`, document.getElementById('token-form').requestSubmit(), true`)
		wait(t, ops, "the scope refusal", `document.getElementById('token-error').textContent.includes('scope')`)
	})

	opsToken := a.Token(t, "operator", interceptors.ScopeConnectionsRead, interceptors.ScopeConnectionsWrite, interceptors.ScopePublish)
	t.Run("with a right token the console shows the demo's sockets", func(t *testing.T) {
		eval[bool](t, ops, `document.getElementById('token').value = `+js(opsToken)+`, document.getElementById('token-form').requestSubmit(), true`)
		wait(t, ops, "the dashboard", `!document.getElementById('dash').hidden`)
		wait(t, ops, "two connections", `document.getElementById('stat-connections').textContent === '2'`)
		// One node without Redis: no nodes panel, no cluster labels.
		if !eval[bool](t, ops, `document.getElementById('nodes-card').hidden && document.body.dataset.cluster === '' && document.querySelector('.scope-label').textContent === ''`) {
			t.Fatal("a single node shows the cluster's nodes panel")
		}
		for name, ctx := range map[string]context.Context{"ana": ana, "ben": ben} {
			id := socketID(t, ctx)
			wait(t, ops, name+"'s socket in the table", `document.querySelector('#connections tr[data-socket=`+js(id)+`][data-user=`+js(name)+`]') !== null`)
		}
		wait(t, ops, "the health verdict", `document.getElementById('health-status').dataset.status === 'healthy'`)
		wait(t, ops, "the presence channel with 2 subscribers", `document.querySelector('#channels tr[data-channel="presence-team-`+team+`"] .subs')?.textContent === '2'`)
		eval[bool](t, ops, `document.querySelector('#channels tr[data-channel="presence-team-`+team+`"] button.members').click(), true`)
		wait(t, ops, "the presence members", `document.querySelector('#members li[data-user="ana"]') !== null && document.querySelector('#members li[data-user="ben"]') !== null`)
	})

	t.Run("the demo's publish and cheer appear in the event log", func(t *testing.T) {
		wait(t, ops, "the live event stream", `document.getElementById('watch-state').dataset.live === '1'`)
		api.send(t, "presence-team-"+team, "activity", `{"walker":"Dev Rambler","miles":2,"note":"Lunch lap"}`)
		wait(t, ops, "the published event in the log", `document.querySelector('#event-log li[data-type="published"][data-event="activity"][data-channel="presence-team-`+team+`"]') !== null`)
		eval[bool](t, ana, `document.querySelector('#members .avatar[data-user="ben"] button.cheer').click(), true`)
		wait(t, ops, "the client event in the log", `document.querySelector('#event-log li[data-type="client_event"][data-event="client-cheer"]') !== null`)
		// Filtering by channel hides the rows of other channels.
		eval[bool](t, ops, `(() => { const f = document.getElementById('event-filter'); f.value = 'private-encrypted-'; f.dispatchEvent(new Event('input')); return true; })()`)
		if n := eval[int](t, ops, `[...document.querySelectorAll('#event-log li[data-type="published"]')].filter(li => !li.hidden).length`); n != 0 {
			t.Fatalf("%d published rows of presence-team- still shown under a private-encrypted- filter", n)
		}
		eval[bool](t, ops, `(() => { const f = document.getElementById('event-filter'); f.value = ''; f.dispatchEvent(new Event('input')); return true; })()`)
	})

	t.Run("the test-event form delivers to the demo page", func(t *testing.T) {
		eval[bool](t, ops, `(() => {
			document.getElementById('send-channel').value = 'presence-team-`+team+`';
			document.getElementById('send-event').value = 'activity';
			document.getElementById('send-data').value = JSON.stringify({walker: 'Ops', miles: 1, note: 'hello from the console'});
			document.getElementById('send-form').requestSubmit();
			return true; })()`)
		wait(t, ops, "the send result", `document.getElementById('send-result').textContent.includes('delivered to 2')`)
		wait(t, ana, "the console's event in Ana's feed", `[...document.querySelectorAll('#feed li[data-kind="activity"]')].some(li => li.textContent.includes('hello from the console'))`)
	})

	t.Run("disconnecting from the console closes the page's socket and it reconnects", func(t *testing.T) {
		old := socketID(t, ben)
		wait(t, ops, "Ben's row", `document.querySelector('#connections tr[data-socket=`+js(old)+`] button.disconnect') !== null`)
		eval[bool](t, ops, `document.querySelector('#connections tr[data-socket=`+js(old)+`] button.disconnect').click(), true`)
		wait(t, ops, "the action result", `document.getElementById('action-result').textContent.includes('Disconnected socket')`)
		wait(t, ben, "Ben's page to reconnect on a new socket", `document.getElementById('conn').dataset.state === 'connected' && document.getElementById('socket').dataset.socket !== `+js(old)+` && [...document.querySelectorAll('#connlog li')].some(li => li.textContent.includes('Reconnected'))`)
		// The server saw the old socket go.
		ctx, cancel := context.WithTimeout(api.ctx, waitFor)
		defer cancel()
		if _, err := api.conn.GetConnection(ctx, &pushercmv1.GetConnectionRequest{SocketId: old}); err == nil {
			t.Fatalf("socket %s still open", old)
		}
		wait(t, ops, "the disconnect in the event log", `document.querySelector('#event-log li[data-type="disconnected"]') !== null`)
	})

	// A few samples, so the charts have lines.
	wait(t, ops, "three samples in the charts", `Number(document.body.dataset.samples) >= 3`)
	screenshot(t, ops, "console.png", 1250)

	t.Run("a teammate who leaves disappears", func(t *testing.T) {
		eval[bool](t, ben, `document.getElementById('leave').click(), true`)
		wait(t, ana, "Ben's avatar to go", `document.querySelector('#members .avatar[data-user="ben"]') === null`)
		wait(t, ana, "the offline line in Ana's feed", `[...document.querySelectorAll('#feed li[data-kind="presence"]')].some(li => li.textContent.includes('Ben Strider went offline'))`)
	})

	if t.Failed() {
		fmt.Println("demo page:", pageText(ana))
	}
}

// TestDemoOutsideDevMode: with demo.enabled but without --dev the page is
// served, the token endpoint is not, and the page says why in words.
func TestDemoOutsideDevMode(t *testing.T) {
	on := true
	a := apptest.Start(t, func(c *config.Config) {
		apptest.Production(c)
		c.Demo.Enabled = &on
		c.Log.Level = "WARN"
	})
	page := tab(t, newBrowser(t))
	if err := chromedp.Do(page, chromedp.Navigate("http://"+a.HTTPAddr()+"/demo/")); err != nil {
		t.Fatal(err)
	}
	wait(t, page, "the demo page to load", `document.body.dataset.ready === '1'`)
	eval[bool](t, page, `document.getElementById('join').click(), true`)
	wait(t, page, "the error in words", `!document.getElementById('error').hidden && document.getElementById('error').textContent.includes('not run in dev mode')`)
	if state := eval[string](t, page, `document.getElementById('state').textContent`); state != "Not connected" {
		t.Fatalf("state %q", state)
	}
}
