package embedded

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/edgetest"
	"github.com/milequest/pushercm/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nbio keeps a process-wide default engine and its pools alive.
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio/taskpool.(*TaskPool).run"),
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio/timer.(*Timer).loop"),
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio.(*Engine).Start.func1"),
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio/taskpool.New.func3"),
	)
}

var _ Hub = (*edge.Server)(nil)

func newPublisher(t testing.TB, s *edge.Server) *delivery.Publisher {
	t.Helper()
	d, err := New(Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	store, err := delivery.NewMemoryStore(delivery.MemoryStoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return delivery.NewPublisher(d, delivery.WithIdempotencyStore(store))
}

func dial(t *testing.T, s *edge.Server) *pushertest.Client {
	return pushertest.Dial(t, s.Addr().String(), edgetest.Key, edgetest.Secret)
}

func TestPublishReachesSubscribersOnce(t *testing.T) {
	s := edgetest.Start(t, edgetest.Config()).Server
	p := newPublisher(t, s)
	ctx := context.Background()
	a, b := dial(t, s), dial(t, s)
	a.Subscribe("team-1", "")
	a.Subscribe("presence-team-1", "u1")
	b.Subscribe("team-1", "")

	ev := delivery.Event{ID: "evt-1", Channels: []string{"team-1", "presence-team-1"}, Name: "activity", Data: `{"km":3.2,"note":"a \"quoted\" word"}`}
	out, err := p.Publish(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if out.DeliveredTo != 3 || out.Duplicate || out.EventID != "evt-1" {
		t.Fatalf("outcome = %+v, want 3 deliveries", out)
	}
	for _, want := range []struct {
		c  *pushertest.Client
		ch string
	}{{a, "team-1"}, {a, "presence-team-1"}, {b, "team-1"}} {
		m := want.c.Expect("activity", want.ch)
		if m.DataString() != ev.Data {
			t.Fatalf("data = %s, want %s", m.DataString(), ev.Data)
		}
	}

	// A repeat is a duplicate; the next application frame each client sees is the marker
	// published afterwards, so nothing was delivered twice.
	out, err = p.Publish(ctx, ev)
	if err != nil || !out.Duplicate || out.DeliveredTo != 0 {
		t.Fatalf("repeat = %+v, %v", out, err)
	}
	res, err := p.PublishBatch(ctx, []delivery.Event{ev})
	if err != nil || !res[0].Outcome.Duplicate {
		t.Fatalf("batch repeat = %+v, %v", res, err)
	}
	if _, err := p.Publish(ctx, delivery.Event{Channels: []string{"team-1"}, Name: "marker", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	a.Expect("marker", "team-1")
	b.Expect("marker", "team-1")
}

func TestPublishExcludesSocket(t *testing.T) {
	s := edgetest.Start(t, edgetest.Config()).Server
	p := newPublisher(t, s)
	a, b := dial(t, s), dial(t, s)
	a.Subscribe("team-1", "")
	b.Subscribe("team-1", "")
	out, err := p.Publish(context.Background(), delivery.Event{Channels: []string{"team-1"}, Name: "e1", Data: "1", ExcludeSocketID: a.SocketID})
	if err != nil || out.DeliveredTo != 1 {
		t.Fatalf("out = %+v, %v", out, err)
	}
	b.Expect("e1", "team-1")
	if _, err := p.Publish(context.Background(), delivery.Event{Channels: []string{"team-1"}, Name: "e2", Data: "2"}); err != nil {
		t.Fatal(err)
	}
	a.Expect("e2", "team-1") // not e1
}

func TestSendToUser(t *testing.T) {
	s := edgetest.Start(t, edgetest.Config()).Server
	p := newPublisher(t, s)
	c1, c2, other := dial(t, s), dial(t, s), dial(t, s)
	c1.SignIn("u7")
	c2.SignIn("u7")
	other.SignIn("u8")
	res, err := p.SendToUser(context.Background(), "u7", "achievement", `{"badge":"10k"}`)
	if err != nil || res.DeliveredTo != 2 {
		t.Fatalf("res = %+v, %v", res, err)
	}
	for _, c := range []*pushertest.Client{c1, c2} {
		if m := c.Expect("achievement", "#server-to-user-u7"); m.DataString() != `{"badge":"10k"}` {
			t.Fatalf("data = %s", m.DataString())
		}
	}
	if _, err := p.SendToUser(context.Background(), "u8", "marker", "{}"); err != nil {
		t.Fatal(err)
	}
	other.Expect("marker", "#server-to-user-u8")
}

func TestPublishBatch(t *testing.T) {
	s := edgetest.Start(t, edgetest.Config()).Server
	p := newPublisher(t, s)
	a := dial(t, s)
	a.Subscribe("team-1", "")
	events := []delivery.Event{
		{ID: "b1", Channels: []string{"team-1"}, Name: "n1", Data: "1"},
		{ID: "b2", Channels: []string{"team-1", "bad name"}, Name: "n2", Data: "2"},
		{ID: "b3", Channels: []string{"team-1"}, Name: "n3", Data: "3"},
	}
	res, err := p.PublishBatch(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[2].Err != nil || res[0].Outcome.DeliveredTo != 1 {
		t.Fatalf("results = %+v", res)
	}
	if !errors.Is(res[1].Err, delivery.ErrInvalid) {
		t.Fatalf("bad event err = %v", res[1].Err)
	}
	a.Expect("n1", "team-1")
	a.Expect("n3", "team-1")
}

func TestQueries(t *testing.T) {
	s := edgetest.Start(t, edgetest.Config()).Server
	d, _ := New(Config{}, s)
	ctx := context.Background()
	a, b, c := dial(t, s), dial(t, s), dial(t, s)
	a.Subscribe("presence-team-1", "u1")
	b.Subscribe("presence-team-1", "u2")
	c.Subscribe("team-1", "")
	c.SignIn("u9")

	list, err := d.Channels(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(list)); got != "[presence-team-1 team-1]" {
		t.Fatalf("channels = %s", got)
	}
	ch, err := d.Channel(ctx, "presence-team-1")
	if err != nil || !ch.Occupied || ch.SubscriptionCount != 2 || ch.UserCount != 2 {
		t.Fatalf("channel = %+v, %v", ch, err)
	}
	ch, err = d.Channel(ctx, "nobody-here")
	if err != nil || ch.Occupied {
		t.Fatalf("empty channel = %+v, %v", ch, err)
	}
	if _, err := d.Channel(ctx, "bad name"); !errors.Is(err, delivery.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	members, err := d.PresenceMembers(ctx, "presence-team-1")
	if err != nil || len(members) != 2 || members[0].UserID != "u1" || string(members[0].UserInfo) != `{"name":"u1"}` {
		t.Fatalf("members = %+v, %v", members, err)
	}
	if m, err := d.PresenceMembers(ctx, "presence-empty"); err != nil || len(m) != 0 {
		t.Fatalf("empty presence = %+v, %v", m, err)
	}
	if _, err := d.PresenceMembers(ctx, "team-1"); !errors.Is(err, delivery.ErrInvalid) {
		t.Fatalf("non-presence: %v", err)
	}
	if h := d.Health(); !h.Healthy || h.Driver != Name {
		t.Fatalf("health = %+v", h)
	}
}

// TestServerToUserChannelsAreHidden: a signed-in socket may subscribe to
// its own #server-to-user- channel, but channel reads never show it.
func TestServerToUserChannelsAreHidden(t *testing.T) {
	s := edgetest.Start(t, edgetest.Config()).Server
	d, _ := New(Config{}, s)
	ctx := context.Background()
	c := dial(t, s)
	c.SignIn("u9")
	c.Subscribe("#server-to-user-u9", "")
	c.Subscribe("team-1", "")
	if ch, err := s.Channel(context.Background(), "#server-to-user-u9"); err != nil || !ch.Occupied {
		t.Fatalf("the edge holds the subscription: %+v, %v", ch, err)
	}

	for _, prefix := range []string{"", "#", "#server-to-user-"} {
		list, err := d.Channels(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range list {
			if strings.HasPrefix(ch.Name, "#server-to-user-") {
				t.Fatalf("Channels(%q) lists %s", prefix, ch.Name)
			}
		}
	}
	ch, err := d.Channel(ctx, "#server-to-user-u9")
	if err != nil || ch.Occupied || ch.SubscriptionCount != 0 || ch.Name != "#server-to-user-u9" {
		t.Fatalf("Channel = %+v, %v; want unoccupied", ch, err)
	}
}

func names(cs []delivery.ChannelInfo) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestShutdownIsUnavailable(t *testing.T) {
	e := edgetest.Start(t, edgetest.Config())
	d, _ := New(Config{}, e.Server)
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := d.Publish(context.Background(), delivery.Event{Channels: []string{"team-1"}, Name: "n", Data: "{}"})
	if !errors.Is(err, delivery.ErrUnavailable) || !errors.Is(err, edge.ErrClosed) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping edge.ErrClosed", err)
	}
}

// fakeHub returns a fixed error, for the error mapping table.
type fakeHub struct{ err error }

func (h fakeHub) Publish(context.Context, edge.Message) (int, error) { return 0, h.err }
func (h fakeHub) SendToUser(context.Context, string, string, string) (int, error) {
	return 0, h.err
}
func (h fakeHub) Channels(context.Context, string) ([]edge.ChannelInfo, error) { return nil, nil }
func (h fakeHub) Channel(context.Context, string) (edge.ChannelInfo, error) {
	return edge.ChannelInfo{}, h.err
}
func (h fakeHub) PresenceMembers(context.Context, string) ([]edge.Member, error) { return nil, h.err }

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"invalid", fmt.Errorf("%w: x", edge.ErrInvalid), delivery.ErrInvalid},
		{"limit", fmt.Errorf("%w: x", edge.ErrLimit), delivery.ErrInvalid},
		{"not found", edge.ErrNotFound, delivery.ErrNotFound},
		{"closed", edge.ErrClosed, delivery.ErrUnavailable},
		{"cancelled", context.Canceled, delivery.ErrDeliveryFailed},
		{"unknown", errors.New("boom"), delivery.ErrDeliveryFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := New(Config{}, fakeHub{tc.err})
			_, err := d.Publish(context.Background(), delivery.Event{Channels: []string{"a"}, Name: "n"})
			if !errors.Is(err, tc.want) || !errors.Is(err, tc.err) {
				t.Fatalf("Publish err = %v, want %v wrapping %v", err, tc.want, tc.err)
			}
			_, err = d.SendToUser(context.Background(), "u", "n", "")
			if !errors.Is(err, tc.want) {
				t.Fatalf("SendToUser err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := New(Config{}, nil); !errors.Is(err, delivery.ErrConfig) {
		t.Fatalf("nil hub: %v", err)
	}
}

func TestPublishBatchStopsOnCancel(t *testing.T) {
	d, _ := New(Config{}, fakeHub{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, errs := d.PublishBatch(ctx, []delivery.Event{{Channels: []string{"a"}, Name: "n"}, {Channels: []string{"b"}, Name: "n"}})
	for i, err := range errs {
		if !errors.Is(err, context.Canceled) || !errors.Is(err, delivery.ErrDeliveryFailed) {
			t.Fatalf("event %d: %v", i, err)
		}
	}
}

// recordingHub records what the driver hands the edge.
type recordingHub struct {
	fakeHub
	msgs []edge.Message
}

func (h *recordingHub) Publish(_ context.Context, m edge.Message) (int, error) {
	h.msgs = append(h.msgs, m)
	return len(m.Channels), nil
}

func TestPublishSealsEncryptedChannels(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	hub := &recordingHub{}
	d, err := New(Config{EncryptionMasterKey: key}, hub)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Publish(context.Background(), delivery.Event{
		Channels: []string{"private-encrypted-team-a", "team-a", "private-encrypted-team-b"}, Name: "msg", Data: `{"t":"secret"}`,
	})
	if err != nil || res.DeliveredTo != 3 {
		t.Fatalf("Publish = %+v, %v", res, err)
	}
	if len(hub.msgs) != 3 {
		t.Fatalf("%d edge publishes, want one per encrypted channel plus one", len(hub.msgs))
	}
	for _, m := range hub.msgs {
		if len(m.Channels) != 1 && m.Channels[0] != "team-a" {
			t.Fatalf("channels %v published together", m.Channels)
		}
		ch := m.Channels[0]
		if ch == "team-a" {
			if m.Data != `{"t":"secret"}` {
				t.Fatalf("plain channel got %q", m.Data)
			}
			continue
		}
		got, err := protocol.DecryptData(ch, key, m.Data)
		if err != nil || got != `{"t":"secret"}` {
			t.Fatalf("%s: DecryptData = %q, %v (data %s)", ch, got, err, m.Data)
		}
	}
	if _, err := New(Config{EncryptionMasterKey: key[:5]}, hub); err == nil {
		t.Fatal("a 5-byte master key was accepted")
	}
}
