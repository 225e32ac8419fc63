package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/delivery"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/health"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/ratelimit"
	"github.com/milequest/pushercm/server"
)

// fakeDriver answers channel queries like the pusher driver would.
type fakeDriver struct {
	delivery.Driver
	channels []delivery.ChannelInfo
	members  []delivery.Member
}

func (f *fakeDriver) Channels(_ context.Context, prefix string) ([]delivery.ChannelInfo, error) {
	var out []delivery.ChannelInfo
	for _, c := range f.channels {
		if strings.HasPrefix(c.Name, prefix) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeDriver) Channel(_ context.Context, name string) (delivery.ChannelInfo, error) {
	for _, c := range f.channels {
		if c.Name == name {
			return c, nil
		}
	}
	return delivery.ChannelInfo{Name: name}, nil
}

func (f *fakeDriver) PresenceMembers(_ context.Context, channel string) ([]delivery.Member, error) {
	if !strings.HasPrefix(channel, "presence-") {
		return nil, delivery.ErrInvalid
	}
	return f.members, nil
}

func channelNames(cs []*pushercmv1.Channel) string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}

func TestListChannelsPagesOverTheDriver(t *testing.T) {
	d := &fakeDriver{channels: []delivery.ChannelInfo{{Name: "a", Occupied: true}, {Name: "b", Occupied: true}, {Name: "c", Occupied: true}, {Name: "d", Occupied: true}, {Name: "e", Occupied: true}}}
	c := &server.Connection{State: d}
	ctx := context.Background()
	var pages []string
	tok := ""
	for {
		resp, err := c.ListChannels(ctx, &pushercmv1.ListChannelsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, channelNames(resp.Channels))
		if resp.NextPageToken == "" {
			break
		}
		tok = resp.NextPageToken
		if len(pages) == 1 {
			// The channel the token points at goes away: the next page
			// still starts after it.
			d.channels = append(d.channels[:1], d.channels[2:]...)
		}
	}
	if got := strings.Join(pages, "|"); got != "a,b|c,d|e" {
		t.Fatalf("pages %s", got)
	}
}

func TestPageTokens(t *testing.T) {
	c := &server.Connection{State: &fakeDriver{channels: []delivery.ChannelInfo{{Name: "a"}, {Name: "b"}}}}
	first, err := c.ListChannels(context.Background(), &pushercmv1.ListChannelsRequest{PageSize: 1})
	if err != nil || first.NextPageToken == "" {
		t.Fatalf("%v %v", first, err)
	}
	for name, tok := range map[string]string{
		"not base64":          "%%%",
		"empty key":           "Y2g6",    // base64url("ch:")
		"another list's kind": "YzoxLjI", // base64url("c:1.2")
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.ListChannels(context.Background(), &pushercmv1.ListChannelsRequest{PageToken: tok})
			var fe *interceptors.FieldError
			if !errors.As(err, &fe) || fe.Field != "page_token" {
				t.Fatalf("got %v, want a page_token field error", err)
			}
		})
	}
}

func TestPusherDriverSocketCallsAreFailedPreconditions(t *testing.T) {
	c := &server.Connection{State: &fakeDriver{}}
	ctx := context.Background()
	calls := map[string]func() error{
		"list": func() error { _, err := c.ListConnections(ctx, &pushercmv1.ListConnectionsRequest{}); return err },
		"get": func() error {
			_, err := c.GetConnection(ctx, &pushercmv1.GetConnectionRequest{SocketId: "1.2"})
			return err
		},
		"disconnect": func() error {
			_, err := c.DisconnectConnection(ctx, &pushercmv1.DisconnectConnectionRequest{SocketId: "1.2"})
			return err
		},
		"terminate": func() error {
			_, err := c.TerminateUserConnections(ctx, &pushercmv1.TerminateUserConnectionsRequest{UserId: "u"})
			return err
		},
		"subscribe": func() error {
			_, err := c.Subscribe(ctx, &pushercmv1.SubscribeRequest{SocketId: "1.2", Channel: "x"})
			return err
		},
		"unsubscribe": func() error {
			_, err := c.Unsubscribe(ctx, &pushercmv1.UnsubscribeRequest{SocketId: "1.2", Channel: "x"})
			return err
		},
		"watch without a webhook view": func() error {
			return c.WatchConnectionEvents(&pushercmv1.WatchConnectionEventsRequest{}, &fakeStream{ctx: ctx})
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, interceptors.ErrFailedPrecondition) {
				t.Fatalf("got %v, want FAILED_PRECONDITION", err)
			}
		})
	}
}

func TestPresenceMembersFromTheDriver(t *testing.T) {
	c := &server.Connection{State: &fakeDriver{members: []delivery.Member{{UserID: "u1"}, {UserID: "u2", UserInfo: json.RawMessage(`{"name":"Ann"}`)}}}}
	resp, err := c.ListPresenceMembers(context.Background(), &pushercmv1.ListPresenceMembersRequest{Channel: "presence-x"})
	if err != nil || resp.Count != 2 || resp.Members[0].UserInfo != nil || resp.Members[1].UserInfo.GetStructValue().GetFields()["name"].GetStringValue() != "Ann" {
		t.Fatalf("%v %v", resp, err)
	}
	if _, err := c.ListPresenceMembers(context.Background(), &pushercmv1.ListPresenceMembersRequest{}); err == nil {
		t.Fatal("empty channel accepted")
	}
}

func TestGetRateLimitStatusPeeks(t *testing.T) {
	clock := ratelimit.NewManualClock(time.Unix(1000, 0))
	cfg := ratelimit.Config{Limiters: map[string]ratelimit.Policy{
		ratelimit.LimiterUser:      {Limits: ratelimit.Limits{MessagesPerSecond: 1, MessagesPerMinute: 60, BurstLimit: 5}},
		ratelimit.LimiterPrincipal: {Unlimited: true, Overrides: map[string]ratelimit.Limits{"svc": {MessagesPerSecond: 10, MessagesPerMinute: 600, BurstLimit: 20}}},
	}}
	set, err := ratelimit.NewSet(cfg, ratelimit.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := set.Limiter(ratelimit.LimiterUser).Allow(context.Background(), "u"); err != nil {
			t.Fatal(err)
		}
	}
	c := &server.Connection{Limits: set}
	for _, tc := range []struct {
		name      string
		user      string
		limiters  string
		remaining int32
	}{
		{"drawn user bucket; unlimited principal omitted", "u", "user", 2},
		{"fresh user; principal override applies", "svc", "user,principal", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // peeking twice changes nothing
				resp, err := c.GetRateLimitStatus(context.Background(), &pushercmv1.GetRateLimitStatusRequest{UserId: tc.user})
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, b := range resp.Buckets {
					names = append(names, b.Limiter)
				}
				if strings.Join(names, ",") != tc.limiters || resp.Buckets[0].Remaining != tc.remaining || resp.Buckets[0].Limit != 5 || resp.Buckets[0].MessagesPerMinute != 60 {
					t.Fatalf("buckets %v", resp.Buckets)
				}
			}
		})
	}
}

func TestGetHealthStatusMapsTheReport(t *testing.T) {
	started := time.Now().Add(-time.Minute)
	c := &server.Connection{
		DriverName: "embedded",
		Started:    func() time.Time { return started },
		Health: func(context.Context) health.Report {
			return health.Report{Status: health.Degraded, Reasons: []string{"r"}, CheckedAt: time.Now(), Figures: &health.Figures{
				ConnectionsActive: 4, ConnectionsMax: 10, Utilization: 0.4, P99Latency: time.Millisecond,
				ErrorRate: 0.1, ErrorsByReason: map[string]int64{"NOT_FOUND": 3}, BreakerState: "open", WebhookBacklog: 7,
			}}
		},
	}
	resp, err := c.GetHealthStatus(context.Background(), &pushercmv1.GetHealthStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != pushercmv1.HealthStatus_HEALTH_STATUS_DEGRADED || resp.Reasons[0] != "r" || resp.Connections.Active != 4 ||
		resp.Connections.Utilization != 0.4 || resp.Performance.P99Latency.AsDuration() != time.Millisecond ||
		resp.Errors.ByReason["NOT_FOUND"] != 3 || resp.BreakerState != "open" || resp.WebhookBacklog != 7 ||
		resp.Uptime.AsDuration() < time.Minute || resp.Driver != "embedded" {
		t.Fatalf("response %v", resp)
	}
}

// fakeStream is a server stream that records what the handler sends.
type fakeStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*pushercmv1.ConnectionEvent
	each func()
}

func (f *fakeStream) Context() context.Context     { return f.ctx }
func (f *fakeStream) SendHeader(metadata.MD) error { return nil }
func (f *fakeStream) SetHeader(metadata.MD) error  { return nil }
func (f *fakeStream) SetTrailer(metadata.MD)       {}
func (f *fakeStream) Send(r *pushercmv1.WatchConnectionEventsResponse) error {
	f.sent = append(f.sent, r.Event)
	if f.each != nil {
		f.each()
	}
	return nil
}

// fakeWatcher feeds a fixed list of events, then ends with err.
type fakeWatcher struct {
	c   chan lifecycle.Event
	err error
}

func (w *fakeWatcher) C() <-chan lifecycle.Event { return w.c }
func (w *fakeWatcher) Err() error                { return w.err }
func (w *fakeWatcher) Close()                    {}

func TestWatchFilters(t *testing.T) {
	events := []lifecycle.Event{
		{Type: lifecycle.Connected, SocketID: "1.1"},
		{Type: lifecycle.Subscribed, SocketID: "1.1", Channel: "presence-a", UserID: "u1"},
		{Type: lifecycle.MemberAdded, Channel: "presence-a", UserID: "u1"},
		{Type: lifecycle.Subscribed, SocketID: "2.2", Channel: "room", UserID: ""},
		{Type: lifecycle.ChannelVacated, Channel: "room"},
		{Type: lifecycle.Disconnected, SocketID: "1.1", Code: 4009, Reason: "bye"},
		{Type: lifecycle.Published, Channel: "room", Name: "hello", Delivered: 1},
		{Type: lifecycle.ClientEvent, SocketID: "1.1", Channel: "presence-a", Name: "client-cheer", UserID: "u1"},
	}
	published := pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_PUBLISHED
	clientEvent := pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_CLIENT_EVENT
	tests := []struct {
		name string
		req  *pushercmv1.WatchConnectionEventsRequest
		want int
		// messages: the source is asked for message events too.
		messages bool
	}{
		{"everything", &pushercmv1.WatchConnectionEventsRequest{}, 6, false},
		{"by type", &pushercmv1.WatchConnectionEventsRequest{Types: []pushercmv1.ConnectionEventType{pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_SUBSCRIBED}}, 2, false},
		{"by channel prefix drops connection events", &pushercmv1.WatchConnectionEventsRequest{ChannelPrefix: "presence-"}, 2, false},
		{"by user", &pushercmv1.WatchConnectionEventsRequest{UserId: "u1"}, 2, false},
		{"by socket", &pushercmv1.WatchConnectionEventsRequest{SocketId: "1.1"}, 3, false},
		{"message events only when named", &pushercmv1.WatchConnectionEventsRequest{Types: []pushercmv1.ConnectionEventType{published, clientEvent}}, 2, true},
		{"message events by channel", &pushercmv1.WatchConnectionEventsRequest{Types: []pushercmv1.ConnectionEventType{published, clientEvent}, ChannelPrefix: "presence-"}, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWatcher{c: make(chan lifecycle.Event, len(events)), err: lifecycle.ErrLagged}
			for _, e := range events {
				w.c <- e
			}
			close(w.c)
			var askedMessages bool
			c := &server.Connection{Watch: func(_ int, messages bool) server.EventWatcher { askedMessages = messages; return w }}
			s := &fakeStream{ctx: context.Background()}
			err := c.WatchConnectionEvents(tc.req, s)
			if askedMessages != tc.messages {
				t.Fatalf("watcher asked for message events: %v, want %v", askedMessages, tc.messages)
			}
			if !errors.Is(err, lifecycle.ErrLagged) {
				t.Fatalf("ended with %v, want the watcher's error", err)
			}
			if len(s.sent) != tc.want {
				t.Fatalf("sent %d events, want %d: %v", len(s.sent), tc.want, s.sent)
			}
		})
	}
	t.Run("unknown type", func(t *testing.T) {
		c := &server.Connection{Watch: func(int, bool) server.EventWatcher { return &fakeWatcher{c: make(chan lifecycle.Event)} }}
		err := c.WatchConnectionEvents(&pushercmv1.WatchConnectionEventsRequest{Types: []pushercmv1.ConnectionEventType{99}}, &fakeStream{ctx: context.Background()})
		var fe *interceptors.FieldError
		if !errors.As(err, &fe) || fe.Field != "types" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("member_added carries the user_info it joined with", func(t *testing.T) {
		// The member has already left when the watcher sends the event, so
		// the info must come from the event, not from a later lookup.
		w := &fakeWatcher{c: make(chan lifecycle.Event, 2), err: lifecycle.ErrLagged}
		w.c <- lifecycle.Event{Type: lifecycle.MemberAdded, Channel: "presence-a", UserID: "u1", UserInfo: []byte(`{"name":"carol"}`)}
		w.c <- lifecycle.Event{Type: lifecycle.MemberAdded, Channel: "presence-a", UserID: "u2"}
		close(w.c)
		s := &fakeStream{ctx: context.Background()}
		_ = (&server.Connection{Watch: func(int, bool) server.EventWatcher { return w }}).WatchConnectionEvents(&pushercmv1.WatchConnectionEventsRequest{}, s)
		if len(s.sent) != 2 {
			t.Fatalf("sent %v", s.sent)
		}
		if got := s.sent[0].GetUserInfo().GetFields()["name"].GetStringValue(); got != "carol" {
			t.Fatalf("user_info %v", s.sent[0].GetUserInfo())
		}
		if s.sent[1].GetUserInfo() != nil {
			t.Fatalf("no info: got %v", s.sent[1].GetUserInfo())
		}
	})
	t.Run("shutdown ends the stream", func(t *testing.T) {
		stopping := make(chan struct{})
		close(stopping)
		c := &server.Connection{Stopping: stopping, Watch: func(int, bool) server.EventWatcher { return &fakeWatcher{c: make(chan lifecycle.Event)} }}
		if err := c.WatchConnectionEvents(&pushercmv1.WatchConnectionEventsRequest{}, &fakeStream{ctx: context.Background()}); !errors.Is(err, interceptors.ErrShuttingDown) {
			t.Fatalf("got %v", err)
		}
	})
}
