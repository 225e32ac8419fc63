package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// bcWait bounds every wait of the broadcast end-to-end tests.
const bcWait = 20 * time.Second

// bcFrame is one application event a subscriber received.
type bcFrame struct {
	Event   string         `json:"event"`
	Channel string         `json:"channel"`
	Data    map[string]any `json:"data"`
}

// bcNextApp returns the next application frame of c, skipping protocol frames.
func bcNextApp(t *testing.T, c *pushertest.Client) bcFrame {
	t.Helper()
	for {
		m := c.Next()
		if pushertest.IsInternal(m.Event) {
			continue
		}
		f := bcFrame{Event: m.Event, Channel: m.Channel}
		if err := m.DecodeData(&f.Data); err != nil {
			t.Fatalf("data of %s: %s: %v", m.Event, m.Data, err)
		}
		return f
	}
}

// bcPusherJS is the subscriber script run with the real pusher-js: it signs
// its own subscription and sign-in with the app secret (as an auth endpoint
// would), prints {"ready":true} once subscribed and signed in, then one JSON
// line per event until it sees "done".
const bcPusherJS = `'use strict';
const crypto = require('node:crypto');
const Pusher = require('pusher-js');
const env = process.env;
const sign = (s) => env.KEY + ':' + crypto.createHmac('sha256', env.SECRET).update(s).digest('hex');
const p = new Pusher(env.KEY, {
  cluster: 'mt1', wsHost: '127.0.0.1', wsPort: Number(env.PORT), forceTLS: false,
  enabledTransports: ['ws'], disableStats: true,
  channelAuthorization: { customHandler: ({ socketId, channelName }, cb) => cb(null, { auth: sign(socketId + ':' + channelName) }) },
  userAuthentication: { customHandler: ({ socketId }, cb) => {
    const ud = JSON.stringify({ id: env.USER });
    cb(null, { auth: sign(socketId + '::user::' + ud), user_data: ud });
  } },
});
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const fail = (why) => { out({ error: why }); process.exit(2); };
setTimeout(() => fail('timeout'), 60000).unref();
const ch = p.subscribe(env.CHANNEL);
ch.bind('pusher:subscription_error', (e) => fail('subscription_error ' + JSON.stringify(e)));
ch.bind_global((event, data) => { if (!event.startsWith('pusher')) out({ event, channel: env.CHANNEL, data }); if (event === 'done') { p.disconnect(); process.exit(0); } });
p.signin();
p.user.bind_global((event, data) => { if (!event.startsWith('pusher')) out({ event, channel: '#server-to-user-' + env.USER, data }); });
const ready = setInterval(() => {
  if (ch.subscribed && p.user.serverToUserChannel && p.user.serverToUserChannel.subscribed) { clearInterval(ready); out({ ready: true }); }
}, 20);
`

// bcNode starts the pusher-js subscriber, or returns nil (with the reason
// logged) when node or test/js/node_modules is missing: the pusher-js
// interop suite (test/js) owns installing them.
func bcNode(t *testing.T, httpAddr, channel, user string) <-chan bcFrame {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Log("node not found: pusher-js subscriber skipped")
		return nil
	}
	modules, err := filepath.Abs(filepath.Join("..", "js", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "pusher-js")); err != nil {
		t.Logf("%s/pusher-js missing (run go test ./test/js once): pusher-js subscriber skipped", modules)
		return nil
	}
	script := filepath.Join(t.TempDir(), "subscriber.js")
	if err := os.WriteFile(script, []byte(bcPusherJS), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(httpAddr)
	cmd := exec.Command(node, script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "KEY="+config.DevAppKey, "SECRET="+config.DevAppSecret,
		"PORT="+port, "CHANNEL="+channel, "USER="+user)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	frames := make(chan bcFrame, 64)
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(frames)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct {
				Ready bool   `json:"ready"`
				Error string `json:"error"`
				bcFrame
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Errorf("pusher-js printed %q", sc.Text())
				continue
			}
			switch {
			case line.Ready:
				close(ready)
			case line.Error != "":
				t.Errorf("pusher-js: %s", line.Error)
			default:
				frames <- line.bcFrame
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
	})
	select {
	case <-ready:
		t.Log("pusher-js subscriber ready")
	case <-done:
		t.Fatal("pusher-js subscriber exited before it was ready")
	case <-time.After(60 * time.Second):
		t.Fatal("pusher-js subscriber not ready within 60s")
	}
	return frames
}

// TestBroadcastThroughTheBinary publishes over gRPC (TCP) to the real binary
// and checks what a raw WebSocket client and real pusher-js receive: the
// events once each, in order, with SendToUser reaching signed-in
// connections and a repeated id delivered once.
func TestBroadcastThroughTheBinary(t *testing.T) {
	s := StartServer(t, nil)
	const channel, user = "private-team-e2e", "user-e2e"

	raw := pushertest.Dial(t, s.HTTPAddr, config.DevAppKey, config.DevAppSecret)
	raw.SkipOther = true
	raw.Subscribe(channel, "")
	raw.SignIn(user)
	js := bcNode(t, s.HTTPAddr, channel, user)
	subscribers := int64(1)
	if js != nil {
		subscribers = 2
	}

	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	tok := pushertest.Mint(t, config.DevServiceSecret, authz.MintOptions{Subject: "svc-e2e", Scopes: []string{"events:publish"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	bc := pushercmv1.NewBroadcastServiceClient(conn)

	activity, _ := structpb.NewValue(map[string]any{"user": "u1", "steps": 1200.0})
	ev := &pushercmv1.Event{Id: "e2e-activity-1", Channels: []string{channel}, Name: "activity", Payload: &pushercmv1.Event_Json{Json: activity}}
	r, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: ev})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetDeliveredTo() != subscribers || r.GetDuplicate() {
		t.Fatalf("SendEvent %v, want delivered to %d", r, subscribers)
	}
	r, err = bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: ev})
	if err != nil || !r.GetDuplicate() || r.GetDeliveredTo() != 0 {
		t.Fatalf("repeat: %v %v, want duplicate", r, err)
	}
	u, err := bc.SendToUser(ctx, &pushercmv1.SendToUserRequest{UserId: user, Name: "achievement", Payload: &pushercmv1.SendToUserRequest_Data{Data: `{"badge":"10k"}`}})
	if err != nil || u.GetDeliveredTo() != subscribers {
		t.Fatalf("SendToUser %v %v, want delivered to %d", u, err, subscribers)
	}
	b, err := bc.SendBatch(ctx, &pushercmv1.SendBatchRequest{Events: []*pushercmv1.Event{
		{Channels: []string{channel}, Name: "batched", Payload: &pushercmv1.Event_Data{Data: `{"n":1}`}},
		{Channels: []string{"bad channel"}, Name: "batched"},
		{Id: "e2e-activity-1", Channels: []string{channel}, Name: "activity"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rs := b.GetResults(); rs[0].GetError() != nil || rs[1].GetError().GetCode() != int32(codes.InvalidArgument) || !rs[2].GetResponse().GetDuplicate() {
		t.Fatalf("batch results %v", rs)
	}
	if _, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Channels: []string{channel}, Name: "done", Payload: &pushercmv1.Event_Data{Data: "{}"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = bc.SendEvent(metadata.NewOutgoingContext(ctx, nil), &pushercmv1.SendEventRequest{Event: ev})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without a token: %v, want UNAUTHENTICATED", err)
	}

	want := []bcFrame{
		{Event: "activity", Channel: channel, Data: map[string]any{"user": "u1", "steps": 1200.0}},
		{Event: "achievement", Channel: protocol.ServerToUserChannel(user), Data: map[string]any{"badge": "10k"}},
		{Event: "batched", Channel: channel, Data: map[string]any{"n": 1.0}},
		{Event: "done", Channel: channel, Data: map[string]any{}},
	}
	check := func(who string, next func() bcFrame) {
		for i, w := range want {
			got := next()
			if got.Event != w.Event || got.Channel != w.Channel || fmt.Sprint(got.Data) != fmt.Sprint(w.Data) {
				t.Fatalf("%s frame %d: got %+v, want %+v", who, i, got, w)
			}
		}
	}
	check("websocket", func() bcFrame { return bcNextApp(t, raw) })
	if js != nil {
		check("pusher-js", func() bcFrame {
			select {
			case f, ok := <-js:
				if !ok {
					t.Fatal("pusher-js subscriber ended early")
				}
				return f
			case <-time.After(bcWait):
				t.Fatal("pusher-js received nothing within the wait")
			}
			return bcFrame{}
		})
	}
}
