package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/delivery"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
	"github.com/milequest/pushercm/protocol"
	"github.com/milequest/pushercm/ratelimit"
	"github.com/milequest/pushercm/server"
)

// bcWait bounds every expectation; generous because test machines are loaded.
const bcWait = 15 * time.Second

// bcEnv is a running pushercm (embedded driver, dev settings) and a client.
type bcEnv struct {
	cfg    config.Config
	app    *apptest.App
	bc     pushercmv1.BroadcastServiceClient
	health healthpb.HealthClient // on the same connection as bc
	ctx    context.Context       // carries the service token
	noAuth context.Context
}

func startBroadcastApp(t testing.TB) *bcEnv { return startBroadcastAppWith(t, nil) }

// startBroadcastAppWith starts the app with dev settings changed by mutate.
func startBroadcastAppWith(t testing.TB, mutate func(*config.Config)) *bcEnv {
	t.Helper()
	a := apptest.Start(t, func(cfg *config.Config) {
		cfg.Log.Level = "ERROR"
		if mutate != nil {
			mutate(cfg)
		}
	})
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tok := bcMint(t, a.Config, interceptors.ScopePublish)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &bcEnv{
		cfg: a.Config, app: a,
		bc:     pushercmv1.NewBroadcastServiceClient(conn),
		health: healthpb.NewHealthClient(conn),
		ctx:    metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok),
		noAuth: ctx,
	}
}

func bcMint(t testing.TB, cfg config.Config, scopes ...string) string {
	t.Helper()
	return pushertest.Mint(t, cfg.JWT.Service.Secret, authz.MintOptions{Subject: "svc-test", Scopes: scopes})
}

func (e *bcEnv) dial(t *testing.T) *pushertest.Client {
	t.Helper()
	return e.app.Dial(t)
}

// bcStatus returns the ErrorInfo reason and BadRequest fields of err.
func bcStatus(t *testing.T, err error) (codes.Code, string, []string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status error: %v", err)
	}
	var reason string
	var fields []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return st.Code(), reason, fields
}

func bcEvent(channels []string, name, data string) *pushercmv1.Event {
	return &pushercmv1.Event{Channels: channels, Name: name, Payload: &pushercmv1.Event_Data{Data: data}}
}

func bcChannels(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ch-%d", i)
	}
	return out
}

func TestBroadcastValidation(t *testing.T) {
	e := startBroadcastApp(t)
	big := strings.Repeat("x", 10*1024+1)
	bigJSON, _ := structpb.NewValue(map[string]any{"s": big})

	tests := []struct {
		name   string
		event  *pushercmv1.Event
		fields []string
	}{
		{"no event", nil, []string{"event"}},
		{"no channels", bcEvent(nil, "e", "{}"), []string{"event.channels"}},
		{"101 channels", bcEvent(bcChannels(101), "e", "{}"), []string{"event.channels"}},
		{"bad channel name", bcEvent([]string{"ok", "bad channel!"}, "e", "{}"), []string{"event.channels[1]"}},
		{"channel name too long", bcEvent([]string{strings.Repeat("c", 165)}, "e", "{}"), []string{"event.channels[0]"}},
		{"duplicate channel", bcEvent([]string{"a", "a"}, "e", "{}"), []string{"event.channels[1]"}},
		{"server-to-user channel", bcEvent([]string{"#server-to-user-u1"}, "e", "{}"), []string{"event.channels[0]"}},
		{"empty event name", bcEvent([]string{"a"}, "", "{}"), []string{"event.name"}},
		{"event name too long", bcEvent([]string{"a"}, strings.Repeat("n", 201), "{}"), []string{"event.name"}},
		{"reserved pusher: name", bcEvent([]string{"a"}, "pusher:subscribe", "{}"), []string{"event.name"}},
		{"reserved pusher_internal: name", bcEvent([]string{"a"}, "pusher_internal:x", "{}"), []string{"event.name"}},
		{"data over 10 KB", bcEvent([]string{"a"}, "e", big), []string{"event.data"}},
		{"json over 10 KB", &pushercmv1.Event{Channels: []string{"a"}, Name: "e", Payload: &pushercmv1.Event_Json{Json: bigJSON}}, []string{"event.json"}},
		{"json without a value", &pushercmv1.Event{Channels: []string{"a"}, Name: "e", Payload: &pushercmv1.Event_Json{Json: &structpb.Value{}}}, []string{"event.json"}},
		{"bad exclude_socket_id", &pushercmv1.Event{Channels: []string{"a"}, Name: "e", ExcludeSocketId: "abc"}, []string{"event.exclude_socket_id"}},
		{"id too long", &pushercmv1.Event{Id: strings.Repeat("i", 129), Channels: []string{"a"}, Name: "e"}, []string{"event.id"}},
		{"every violation at once", bcEvent(nil, "", big), []string{"event.channels", "event.name", "event.data"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: tc.event})
			code, reason, fields := bcStatus(t, err)
			if code != codes.InvalidArgument || reason != interceptors.ReasonInvalidArgument {
				t.Fatalf("got %s %s, want INVALID_ARGUMENT", code, reason)
			}
			if !reflect.DeepEqual(fields, tc.fields) {
				t.Fatalf("field violations %q, want %q", fields, tc.fields)
			}
		})
	}

	userTests := []struct {
		name   string
		req    *pushercmv1.SendToUserRequest
		fields []string
	}{
		{"no user", &pushercmv1.SendToUserRequest{Name: "e"}, []string{"user_id"}},
		{"bad user id", &pushercmv1.SendToUserRequest{UserId: "a b", Name: "e"}, []string{"user_id"}},
		{"no name", &pushercmv1.SendToUserRequest{UserId: "u1"}, []string{"name"}},
		{"reserved name", &pushercmv1.SendToUserRequest{UserId: "u1", Name: "pusher:x"}, []string{"name"}},
		{"data over 10 KB", &pushercmv1.SendToUserRequest{UserId: "u1", Name: "e", Payload: &pushercmv1.SendToUserRequest_Data{Data: big}}, []string{"data"}},
		{"json over 10 KB", &pushercmv1.SendToUserRequest{UserId: "u1", Name: "e", Payload: &pushercmv1.SendToUserRequest_Json{Json: bigJSON}}, []string{"json"}},
		{"id too long", &pushercmv1.SendToUserRequest{Id: strings.Repeat("i", 129), UserId: "u1", Name: "e"}, []string{"id"}},
	}
	for _, tc := range userTests {
		t.Run("SendToUser/"+tc.name, func(t *testing.T) {
			_, err := e.bc.SendToUser(e.ctx, tc.req)
			code, reason, fields := bcStatus(t, err)
			if code != codes.InvalidArgument || reason != interceptors.ReasonInvalidArgument {
				t.Fatalf("got %s %s, want INVALID_ARGUMENT", code, reason)
			}
			if !reflect.DeepEqual(fields, tc.fields) {
				t.Fatalf("field violations %q, want %q", fields, tc.fields)
			}
		})
	}

	batchTests := []struct {
		name   string
		events []*pushercmv1.Event
	}{
		{"empty batch", nil},
		{"101 events", func() []*pushercmv1.Event {
			evs := make([]*pushercmv1.Event, 101)
			for i := range evs {
				evs[i] = bcEvent([]string{"a"}, "e", "{}")
			}
			return evs
		}()},
	}
	for _, tc := range batchTests {
		t.Run("SendBatch/"+tc.name, func(t *testing.T) {
			_, err := e.bc.SendBatch(e.ctx, &pushercmv1.SendBatchRequest{Events: tc.events})
			code, reason, fields := bcStatus(t, err)
			if code != codes.InvalidArgument || reason != interceptors.ReasonInvalidArgument || !reflect.DeepEqual(fields, []string{"events"}) {
				t.Fatalf("got %s %s %q, want INVALID_ARGUMENT on events", code, reason, fields)
			}
		})
	}
}

func TestBroadcastAuth(t *testing.T) {
	e := startBroadcastApp(t)
	req := &pushercmv1.SendEventRequest{Event: bcEvent([]string{"a"}, "e", "{}")}
	tests := []struct {
		name   string
		ctx    context.Context
		code   codes.Code
		reason string
	}{
		{"no token", e.noAuth, codes.Unauthenticated, interceptors.ReasonAuthenticationFailed},
		{"wrong scope", metadata.AppendToOutgoingContext(e.noAuth, "authorization", "Bearer "+bcMint(t, e.cfg, interceptors.ScopeAuthorize)), codes.PermissionDenied, interceptors.ReasonAuthorizationFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.bc.SendEvent(tc.ctx, req)
			code, reason, _ := bcStatus(t, err)
			if code != tc.code || reason != tc.reason {
				t.Fatalf("got %s %s, want %s %s", code, reason, tc.code, tc.reason)
			}
		})
	}
}

func TestBroadcastSendEventDeliversAndExcludes(t *testing.T) {
	e := startBroadcastApp(t)
	a, b := e.dial(t), e.dial(t)
	a.Subscribe("team-1", "")
	b.Subscribe("team-1", "")
	b.Subscribe("private-team-1", "")

	resp, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
		Channels: []string{"team-1", "private-team-1"}, Name: "activity", Payload: &pushercmv1.Event_Data{Data: `{"n":1}`},
		ExcludeSocketId: a.SocketID,
	}})
	if err != nil {
		t.Fatal(err)
	}
	// b is on both channels; a is excluded.
	if resp.GetDeliveredTo() != 2 || resp.GetDuplicate() || resp.GetEventId() == "" || len(resp.GetChannels()) != 2 {
		t.Fatalf("response %v, want delivered_to 2 with a generated id", resp)
	}
	got := map[string]string{}
	for range 2 {
		m := b.Next()
		got[m.Channel] = m.DataString()
	}
	if got["team-1"] != `{"n":1}` || got["private-team-1"] != `{"n":1}` {
		t.Fatalf("b received %v", got)
	}

	// a's next application frame must be this one: the excluded event never came.
	if _, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: bcEvent([]string{"team-1"}, "after", "2")}); err != nil {
		t.Fatal(err)
	}
	if m := a.Expect("after", "team-1"); m.DataString() != "2" {
		t.Fatalf("data %q", m.DataString())
	}
}

func TestBroadcastJSONPayloadEncodedOnce(t *testing.T) {
	e := startBroadcastApp(t)
	c := e.dial(t)
	c.Subscribe("feed", "")
	v, err := structpb.NewValue(map[string]any{"steps": 1200.0, "team": "t1", "tags": []any{"a", "b"}, "nested": map[string]any{"ok": true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
		Channels: []string{"feed"}, Name: "progress", Payload: &pushercmv1.Event_Json{Json: v},
	}}); err != nil {
		t.Fatal(err)
	}
	m := c.Expect("progress", "feed")
	// Clients receive data as a string holding the JSON document (Pusher's
	// wire form), and that string decodes straight to the object: it was
	// encoded once, not as a JSON string of a JSON string.
	var s string
	if err := json.Unmarshal(m.Data, &s); err != nil {
		t.Fatalf("data is not a JSON string: %s", m.Data)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(s), &got); err != nil {
		t.Fatalf("data %q does not decode to an object: %v", s, err)
	}
	if want := v.AsInterface(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestBroadcastSendBatchOneBadEvent(t *testing.T) {
	e := startBroadcastApp(t)
	c := e.dial(t)
	c.Subscribe("feed", "")

	resp, err := e.bc.SendBatch(e.ctx, &pushercmv1.SendBatchRequest{Events: []*pushercmv1.Event{
		bcEvent([]string{"feed"}, "first", "1"),
		{Channels: []string{"feed"}, Name: "bad-json", Payload: &pushercmv1.Event_Json{Json: &structpb.Value{}}},
		bcEvent([]string{"feed"}, "pusher:bad", "2"),
		nil,
		bcEvent([]string{"feed"}, "last", "3"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	rs := resp.GetResults()
	if len(rs) != 5 {
		t.Fatalf("%d results, want 5", len(rs))
	}
	for i, r := range rs {
		if int(r.GetIndex()) != i {
			t.Fatalf("result %d has index %d", i, r.GetIndex())
		}
	}
	for _, i := range []int{0, 4} {
		if r := rs[i]; r.GetError() != nil || r.GetResponse().GetDeliveredTo() != 1 {
			t.Fatalf("result %d = %v, want delivered to 1", i, r)
		}
	}
	// Field paths are the request's, even when earlier events never
	// reached the publisher.
	// A nil event arrives as an empty one.
	wantErr := map[int][]string{1: {"events[1].json"}, 2: {"events[2].name"}, 3: {"events[3].channels", "events[3].name"}}
	for i, want := range wantErr {
		ie := rs[i].GetError()
		if rs[i].GetResponse() != nil || ie.GetCode() != int32(codes.InvalidArgument) || ie.GetReason() != interceptors.ReasonInvalidArgument {
			t.Fatalf("result %d = %v, want INVALID_ARGUMENT", i, rs[i])
		}
		var fields []string
		for _, v := range ie.GetFieldViolations() {
			fields = append(fields, v.GetField())
		}
		if !reflect.DeepEqual(fields, want) {
			t.Fatalf("result %d violations %q, want %q", i, fields, want)
		}
	}
	c.Expect("first", "feed")
	c.Expect("last", "feed")
}

func TestBroadcastIdempotency(t *testing.T) {
	e := startBroadcastApp(t)
	c := e.dial(t)
	c.Subscribe("feed", "")

	ev := &pushercmv1.Event{Id: "evt-1", Channels: []string{"feed"}, Name: "once", Payload: &pushercmv1.Event_Data{Data: "x"}}
	first, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: ev})
	if err != nil {
		t.Fatal(err)
	}
	if first.GetDuplicate() || first.GetDeliveredTo() != 1 || first.GetEventId() != "evt-1" {
		t.Fatalf("first send %v", first)
	}
	again, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: ev})
	if err != nil {
		t.Fatal(err)
	}
	if !again.GetDuplicate() || again.GetDeliveredTo() != 0 || again.GetEventId() != "evt-1" {
		t.Fatalf("repeat %v, want duplicate", again)
	}
	batch, err := e.bc.SendBatch(e.ctx, &pushercmv1.SendBatchRequest{Events: []*pushercmv1.Event{
		ev,
		{Id: "evt-2", Channels: []string{"feed"}, Name: "batched", Payload: &pushercmv1.Event_Data{Data: "y"}},
		{Id: "evt-2", Channels: []string{"feed"}, Name: "batched", Payload: &pushercmv1.Event_Data{Data: "y"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	rs := batch.GetResults()
	if !rs[0].GetResponse().GetDuplicate() || rs[1].GetResponse().GetDuplicate() || !rs[2].GetResponse().GetDuplicate() {
		t.Fatalf("batch results %v, want duplicate, delivered, duplicate", rs)
	}
	// The id delivered by the batch is a duplicate for SendEvent too.
	if r, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: bcBatchedEvent()}); err != nil || !r.GetDuplicate() {
		t.Fatalf("SendEvent after batch: %v %v, want duplicate", r, err)
	}
	if _, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: bcEvent([]string{"feed"}, "marker", "")}); err != nil {
		t.Fatal(err)
	}
	// Exactly once, once, then the marker: any repeat would fail expect.
	c.Expect("once", "feed")
	c.Expect("batched", "feed")
	c.Expect("marker", "feed")

	// SendToUser has the same key space rules.
	u := e.dial(t)
	u.SignIn("user-7")
	for i, wantDup := range []bool{false, true} {
		r, err := e.bc.SendToUser(e.ctx, &pushercmv1.SendToUserRequest{Id: "user-evt", UserId: "user-7", Name: "badge", Payload: &pushercmv1.SendToUserRequest_Data{Data: "z"}})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetDuplicate() != wantDup {
			t.Fatalf("SendToUser #%d duplicate=%v", i, r.GetDuplicate())
		}
	}
	if _, err := e.bc.SendToUser(e.ctx, &pushercmv1.SendToUserRequest{UserId: "user-7", Name: "marker"}); err != nil {
		t.Fatal(err)
	}
	ch := protocol.ServerToUserChannel("user-7")
	u.Expect("badge", ch)
	u.Expect("marker", ch)
}

func bcBatchedEvent() *pushercmv1.Event {
	return &pushercmv1.Event{Id: "evt-2", Channels: []string{"feed"}, Name: "batched", Payload: &pushercmv1.Event_Data{Data: "y"}}
}

func TestBroadcastSendToUser(t *testing.T) {
	e := startBroadcastApp(t)
	signedIn, other := e.dial(t), e.dial(t)
	signedIn.SignIn("user-1")
	second := e.dial(t)
	second.SignIn("user-1")
	other.SignIn("user-2")

	v, _ := structpb.NewValue(map[string]any{"badge": "10k-steps"})
	resp, err := e.bc.SendToUser(e.ctx, &pushercmv1.SendToUserRequest{UserId: "user-1", Name: "achievement", Payload: &pushercmv1.SendToUserRequest_Json{Json: v}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeliveredTo() != 2 || resp.GetDuplicate() || resp.GetEventId() == "" {
		t.Fatalf("response %v, want delivered to both connections of user-1", resp)
	}
	ch := protocol.ServerToUserChannel("user-1")
	for _, c := range []*pushertest.Client{signedIn, second} {
		m := c.Expect("achievement", ch)
		var got map[string]any
		if err := m.DecodeData(&got); err != nil || got["badge"] != "10k-steps" {
			t.Fatalf("data %s: %v", m.Data, err)
		}
	}
	// user-2 saw nothing: its next application frame is its own.
	if _, err := e.bc.SendToUser(e.ctx, &pushercmv1.SendToUserRequest{UserId: "user-2", Name: "mine"}); err != nil {
		t.Fatal(err)
	}
	other.Expect("mine", protocol.ServerToUserChannel("user-2"))

	// Nobody signed in: delivered to no one, not an error.
	resp, err = e.bc.SendToUser(e.ctx, &pushercmv1.SendToUserRequest{UserId: "nobody", Name: "e"})
	if err != nil || resp.GetDeliveredTo() != 0 {
		t.Fatalf("%v %v", resp, err)
	}
}

// TestPusherDriver publishes through the pusher driver (wired from
// config) to a second pushercm's edge standing in for Pusher, where a
// WebSocket client sees the events.
func TestBroadcastPusherDriver(t *testing.T) {
	upstream := startBroadcastApp(t)
	e := startBroadcastAppWith(t, func(c *config.Config) {
		c.Driver = config.DriverPusher
		c.Pusher.Host = upstream.app.HTTPAddr()
		c.Pusher.Scheme = "http"
	})
	c := upstream.dial(t)
	c.Subscribe("team-9", "")
	c.SignIn("user-9")

	ev := &pushercmv1.Event{Id: "p-1", Channels: []string{"team-9"}, Name: "activity", Payload: &pushercmv1.Event_Data{Data: `{"a":1}`}}
	r, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: ev})
	if err != nil {
		t.Fatal(err)
	}
	// delivered_to is the subscription count the upstream reported.
	if r.GetDeliveredTo() != 1 || r.GetDuplicate() {
		t.Fatalf("SendEvent %v", r)
	}
	if r, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: ev}); err != nil || !r.GetDuplicate() {
		t.Fatalf("repeat %v %v", r, err)
	}
	b, err := e.bc.SendBatch(e.ctx, &pushercmv1.SendBatchRequest{Events: []*pushercmv1.Event{
		bcEvent([]string{"team-9"}, "b1", "1"), bcEvent([]string{"team-9"}, "pusher:bad", "2"), bcEvent([]string{"team-9"}, "b2", "3"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rs := b.GetResults(); rs[0].GetError() != nil || rs[1].GetError().GetReason() != interceptors.ReasonInvalidArgument || rs[2].GetError() != nil {
		t.Fatalf("batch %v", rs)
	}
	if _, err := e.bc.SendToUser(e.ctx, &pushercmv1.SendToUserRequest{UserId: "user-9", Name: "badge", Payload: &pushercmv1.SendToUserRequest_Data{Data: "z"}}); err != nil {
		t.Fatal(err)
	}
	c.Expect("activity", "team-9")
	c.Expect("b1", "team-9")
	c.Expect("b2", "team-9")
	c.Expect("badge", protocol.ServerToUserChannel("user-9"))
}

// fakeBcPublisher answers without delivering, for tests of the handler alone.
type fakeBcPublisher struct {
	outcome delivery.Outcome
	batch   []delivery.BatchResult
	err     error
}

func (f *fakeBcPublisher) Publish(context.Context, delivery.Event) (delivery.Outcome, error) {
	return f.outcome, f.err
}

func (f *fakeBcPublisher) PublishBatch(_ context.Context, evs []delivery.Event) ([]delivery.BatchResult, error) {
	return f.batch, f.err
}

func (f *fakeBcPublisher) SendToUserOnce(context.Context, string, string, string, string) (delivery.Outcome, error) {
	return f.outcome, f.err
}

// TestBroadcastConversionFieldPaths checks the field paths of errors found
// while converting the request (before the Publisher sees it), in each RPC.
func TestBroadcastConversionFieldPaths(t *testing.T) {
	badTS := &timestamppb.Timestamp{Seconds: -1 << 40}
	noValue := &pushercmv1.Event_Json{Json: &structpb.Value{}}
	b := &server.Broadcast{Publisher: &fakeBcPublisher{batch: []delivery.BatchResult{{}}}, Log: bcDiscardLog()}
	field := func(err error) string {
		var fe *interceptors.FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("not a field error: %v", err)
		}
		return fe.Field
	}

	_, err := b.SendEvent(context.Background(), &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Channels: []string{"a"}, Name: "e", OccurredAt: badTS}})
	if f := field(err); f != "event.occurred_at" {
		t.Errorf("SendEvent occurred_at: field %q", f)
	}
	_, err = b.SendEvent(context.Background(), &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Channels: []string{"a"}, Name: "e", Payload: noValue}})
	if f := field(err); f != "event.json" {
		t.Errorf("SendEvent json: field %q", f)
	}
	_, err = b.SendToUser(context.Background(), &pushercmv1.SendToUserRequest{UserId: "u1", Name: "e", Payload: &pushercmv1.SendToUserRequest_Json{Json: &structpb.Value{}}})
	if f := field(err); f != "json" {
		t.Errorf("SendToUser json: field %q", f)
	}

	resp, err := b.SendBatch(context.Background(), &pushercmv1.SendBatchRequest{Events: []*pushercmv1.Event{
		nil,
		{Channels: []string{"a"}, Name: "e", OccurredAt: badTS},
		{Channels: []string{"a"}, Name: "e", Payload: noValue},
		bcEvent([]string{"a"}, "e", "ok"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"events[0]", "events[1].occurred_at", "events[2].json"} {
		r := resp.GetResults()[i]
		fv := r.GetError().GetFieldViolations()
		if r.GetIndex() != int32(i) || len(fv) != 1 || fv[0].GetField() != want {
			t.Errorf("batch item %d: %v, want field %s", i, r, want)
		}
	}
	if r := resp.GetResults()[3]; r.GetError() != nil {
		t.Errorf("batch item 3: %v", r)
	}
}

func TestBroadcastSpanAttributes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	b := &server.Broadcast{Publisher: &fakeBcPublisher{outcome: delivery.Outcome{EventID: "x", DeliveredTo: 7, Duplicate: false}}}
	ctx, span := tp.Tracer("test").Start(context.Background(), "rpc")
	if _, err := b.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: bcEvent([]string{"a", "b", "c"}, "e", "12345")}); err != nil {
		t.Fatal(err)
	}
	span.End()
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range rec.Ended()[0].Attributes() {
		got[kv.Key] = kv.Value
	}
	want := map[attribute.Key]attribute.Value{
		"pushercm.channels.count": attribute.IntValue(3),
		"pushercm.event.size":     attribute.IntValue(5),
		"pushercm.delivered_to":   attribute.IntValue(7),
		"pushercm.duplicate":      attribute.BoolValue(false),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("attributes %v, want %v", got, want)
	}
}

func TestBroadcastBatchItemErrors(t *testing.T) {
	rl := &interceptors.RateLimitError{Limiter: "user", Key: "u1", RetryAfter: 1500 * time.Millisecond, ResetTime: time.Now().Add(2 * time.Second)}
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		retry  int64
	}{
		{"rate limited", rl, codes.ResourceExhausted, interceptors.ReasonRateLimited, 1500},
		{"upstream down", fmt.Errorf("%w: breaker open", delivery.ErrUnavailable), codes.Unavailable, interceptors.ReasonConnectionFailed, 0},
		{"failed after retries", fmt.Errorf("%w: 500", delivery.ErrDeliveryFailed), codes.Unavailable, interceptors.ReasonMessageDeliveryFailed, 0},
		{"internal", errors.New("boom"), codes.Internal, interceptors.ReasonInternal, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &server.Broadcast{
				Publisher: &fakeBcPublisher{batch: []delivery.BatchResult{{Err: tc.err}, {Outcome: delivery.Outcome{EventID: "ok", DeliveredTo: 1}}}},
				Log:       bcDiscardLog(),
			}
			resp, err := b.SendBatch(context.Background(), &pushercmv1.SendBatchRequest{Events: []*pushercmv1.Event{
				bcEvent([]string{"a"}, "e", ""), bcEvent([]string{"a"}, "e", ""),
			}})
			if err != nil {
				t.Fatal(err)
			}
			ie := resp.GetResults()[0].GetError()
			if ie.GetCode() != int32(tc.code) || ie.GetReason() != tc.reason || ie.GetRetryAfterMs() != tc.retry {
				t.Fatalf("item error %v, want %s %s retry %d", ie, tc.code, tc.reason, tc.retry)
			}
			if tc.retry > 0 && ie.GetMetadata()["retryAfterMs"] != "1500" {
				t.Fatalf("metadata %v", ie.GetMetadata())
			}
			if tc.code == codes.Internal && strings.Contains(ie.GetMessage(), "boom") {
				t.Fatalf("internal cause leaked: %q", ie.GetMessage())
			}
			if r := resp.GetResults()[1]; r.GetError() != nil || r.GetResponse().GetEventId() != "ok" {
				t.Fatalf("the good event was sunk: %v", r)
			}
		})
	}
}

func bcDiscardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// bcBenchSubscribers connects n subscribers to channel that drain what they
// receive as raw bytes, the way bench/edge's receiver does: a
// pushertest.Client decodes every frame with three allocations, which at
// fan-out 100 would be most of the benchmark's allocs/op and a good part of
// its CPU, and none of it the server's.
func bcBenchSubscribers(b *testing.B, e *bcEnv, n int, channel string) {
	b.Helper()
	sub := fmt.Sprintf(`{"event":"pusher:subscribe","data":{"channel":%q}}`, channel)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), bcWait)
		conn, br, _, err := ws.Dialer{Timeout: bcWait}.Dial(ctx,
			"ws://"+e.app.HTTPAddr()+"/app/"+e.cfg.Pusher.Key+"?protocol=7&client=bench&version=1")
		cancel()
		if err != nil {
			b.Fatalf("dial: %v", err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		if err := wsutil.WriteClientText(conn, []byte(sub)); err != nil {
			b.Fatalf("subscribe: %v", err)
		}
		var r io.Reader = conn
		if br != nil {
			r = io.MultiReader(br, conn)
		}
		go func() { _, _ = io.Copy(io.Discard, r) }()
	}
	// Subscriptions are asynchronous; wait until the edge counts them all.
	pushertest.Eventually(b, "every subscriber counted", func() error {
		r, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: bcEvent([]string{channel}, "probe", "")})
		if err == nil && r.GetDeliveredTo() != int64(n) {
			err = fmt.Errorf("a probe reached %d of %d", r.GetDeliveredTo(), n)
		}
		return err
	})
}

// BenchmarkSendEvent measures SendEvent over TCP through the whole
// interceptor chain into the embedded edge with 100 subscribers on the
// channel, against the empty Health/Check on the same server.
func BenchmarkBroadcastSendEvent(b *testing.B) {
	e := startBroadcastAppWith(b, func(c *config.Config) {
		// Far above reach, so the check runs but never refuses.
		c.RateLimit.Limiters[ratelimit.LimiterPrincipal] = ratelimit.Policy{Limits: ratelimit.Limits{
			MessagesPerSecond: 1e7, MessagesPerMinute: 6e8, BurstLimit: 1e7,
		}}
		if d, err := time.ParseDuration(os.Getenv("BENCH_FLUSH_INTERVAL")); err == nil {
			c.Edge.FlushInterval = d
		}
	})
	bcBenchSubscribers(b, e, bcBenchSubs, "bench")
	var n atomic.Int64
	b.ReportAllocs()
	defer bcReportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "b-" + strconv.FormatInt(n.Add(1), 10)
			if _, err := e.bc.SendEvent(e.ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
				Id: id, Channels: []string{"bench"}, Name: "load", Payload: &pushercmv1.Event_Data{Data: `{"n":1}`},
			}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBroadcastHealthCheck is the baseline of BenchmarkBroadcastSendEvent:
// the empty unary grpc.health.v1.Health/Check over the same kind of server,
// connection and interceptor chain, without a token (as bench/cmd/grpcload
// calls it), with the same subscribers connected.
func BenchmarkBroadcastHealthCheck(b *testing.B) {
	e := startBroadcastApp(b)
	bcBenchSubscribers(b, e, bcBenchSubs, "bench")
	b.ReportAllocs()
	defer bcReportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.health.Check(e.noAuth, &healthpb.HealthCheckRequest{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// bcReportCPU resets the timer and returns a func that reports the process's
// CPU time (user + system, all threads: client, server and subscribers) per
// op as cpu-ns/op, and on Linux its read and write system calls per op
// (reads/op, writes/op; syscalls are the dearest thing on a VM). On a shared
// machine ns/op measures how long 2 callers wait as much as how much work a
// call is; CPU time per call is the steadier figure for comparing the two
// benchmarks and before/after.
func bcReportCPU(b *testing.B) func() {
	b.ResetTimer()
	start := bcCPUTime(b)
	r0, w0, sysOK := bcSyscalls()
	return func() {
		b.StopTimer()
		if b.N == 0 {
			return
		}
		if start >= 0 {
			b.ReportMetric(float64(bcCPUTime(b)-start)/float64(b.N), "cpu-ns/op")
		}
		if r1, w1, ok := bcSyscalls(); ok && sysOK {
			b.ReportMetric(float64(r1-r0)/float64(b.N), "reads/op")
			b.ReportMetric(float64(w1-w0)/float64(b.N), "writes/op")
		}
	}
}

var bcBenchSubs = func() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_SUBS")); err == nil {
		return v
	}
	return 100
}()
