package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"

	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/protocol"
)

// sdkServer runs the handler (real clock) behind a real listener for pusher-http-go.
func sdkServer(t *testing.T) (*fakeBackend, *httptest.Server, *pusher.Client) {
	t.Helper()
	f := newFake()
	f.seedState()
	srv := httptest.NewServer(httpapi.New(httpapi.Config{AppID: appID, Key: key, Secret: secret}, f))
	t.Cleanup(srv.Close)
	c := &pusher.Client{
		AppID: appID, Key: key, Secret: secret,
		Host:       strings.TrimPrefix(srv.URL, "http://"),
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
	}
	return f, srv, c
}

var statusInErr = regexp.MustCompile(`^Status Code: (\d+) - `)

// sdkStatus extracts the HTTP status from a pusher-http-go error ("Status Code: N - body"),
// the only form in which the SDK exposes it.
func sdkStatus(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 200
	}
	m := statusInErr.FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("not an HTTP status error: %v", err)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestPusherHTTPGoTrigger(t *testing.T) {
	f, _, c := sdkServer(t)
	if err := c.Trigger("my-channel", "my-event", map[string]string{"message": "hello abc/d"}); err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if err := c.TriggerMulti([]string{"a", "presence-room"}, "multi", "plain"); err != nil {
		t.Fatalf("TriggerMulti: %v", err)
	}
	// TriggerWithParams with a SocketID is what the deprecated TriggerExclusive calls.
	exclude := "123.456"
	if _, err := c.TriggerWithParams("a", "excl", "x", pusher.TriggerParams{SocketID: &exclude}); err != nil {
		t.Fatalf("TriggerWithParams (exclusive): %v", err)
	}
	info := "user_count,subscription_count"
	res, err := c.TriggerMultiWithParams([]string{"presence-room", "public"}, "with-info", "x", pusher.TriggerParams{Info: &info})
	if err != nil {
		t.Fatalf("TriggerMultiWithParams: %v", err)
	}
	if uc := res.Channels["presence-room"].UserCount; uc == nil || *uc != 2 {
		t.Fatalf("user_count %v", res.Channels["presence-room"])
	}
	if sc := res.Channels["public"].SubscriptionCount; sc == nil || *sc != 4 {
		t.Fatalf("subscription_count %v", res.Channels["public"])
	}
	if err := c.SendToUser("7", "to-user", map[string]int{"n": 1}); err != nil {
		t.Fatalf("SendToUser: %v", err)
	}

	pub, sends, _ := f.snapshot()
	want := []httpapi.Message{
		{Channels: []string{"my-channel"}, Event: "my-event", Data: `{"message":"hello abc/d"}`},
		{Channels: []string{"a", "presence-room"}, Event: "multi", Data: "plain"},
		{Channels: []string{"a"}, Event: "excl", Data: "x", ExcludeSocketID: "123.456"},
		{Channels: []string{"presence-room", "public"}, Event: "with-info", Data: "x"},
	}
	if !reflect.DeepEqual(pub, want) {
		t.Fatalf("published\n got %+v\nwant %+v", pub, want)
	}
	if !reflect.DeepEqual(sends, []userSend{{"7", "to-user", `{"n":1}`}}) {
		t.Fatalf("sends %+v", sends)
	}
}

func TestPusherHTTPGoTriggerBatch(t *testing.T) {
	f, _, c := sdkServer(t)
	sock, info := "1.2", "subscription_count"
	res, err := c.TriggerBatch([]pusher.Event{
		{Channel: "donut-1", Name: "ev1", Data: "d1"},
		{Channel: "public", Name: "ev2", Data: map[string]string{"k": "v"}, SocketID: &sock, Info: &info},
	})
	if err != nil {
		t.Fatalf("TriggerBatch: %v", err)
	}
	if len(res.Batch) != 2 || res.Batch[1].SubscriptionCount == nil || *res.Batch[1].SubscriptionCount != 4 {
		t.Fatalf("batch info %+v", res.Batch)
	}
	pub, _, _ := f.snapshot()
	want := []httpapi.Message{
		{Channels: []string{"donut-1"}, Event: "ev1", Data: "d1"},
		{Channels: []string{"public"}, Event: "ev2", Data: `{"k":"v"}`, ExcludeSocketID: "1.2"},
	}
	if !reflect.DeepEqual(pub, want) {
		t.Fatalf("published %+v", pub)
	}
}

func TestPusherHTTPGoQueries(t *testing.T) {
	_, _, c := sdkServer(t)
	prefix, uc := "presence-", "user_count"
	list, err := c.Channels(pusher.ChannelsParams{FilterByPrefix: &prefix, Info: &uc})
	if err != nil {
		t.Fatalf("Channels: %v", err)
	}
	if len(list.Channels) != 2 || list.Channels["presence-room"].UserCount != 2 {
		t.Fatalf("Channels %+v", list)
	}
	all, err := c.Channels(pusher.ChannelsParams{})
	if err != nil || len(all.Channels) != 4 {
		t.Fatalf("Channels (all) %+v %v", all, err)
	}

	attrs := "user_count,subscription_count"
	ch, err := c.Channel("presence-room", pusher.ChannelParams{Info: &attrs})
	if err != nil {
		t.Fatalf("Channel: %v", err)
	}
	if !ch.Occupied || ch.UserCount != 2 || ch.SubscriptionCount != 3 {
		t.Fatalf("Channel %+v", ch)
	}
	// pusher-http-go puts the raw name in the path; the signature must still verify.
	odd, err := c.Channel("presence-a@b,c;d=e", pusher.ChannelParams{Info: &uc})
	if err != nil || !odd.Occupied || odd.UserCount != 1 {
		t.Fatalf("Channel(raw special characters) %+v %v", odd, err)
	}
	empty, err := c.Channel("nobody", pusher.ChannelParams{})
	if err != nil || empty.Occupied {
		t.Fatalf("Channel(unoccupied) %+v %v", empty, err)
	}

	users, err := c.GetChannelUsers("presence-room")
	if err != nil {
		t.Fatalf("GetChannelUsers: %v", err)
	}
	if len(users.List) != 2 || users.List[0].ID != "1" || users.List[1].ID != "2" {
		t.Fatalf("users %+v", users)
	}
	if _, err := c.GetChannelUsers("public"); sdkStatus(t, err) != 400 {
		t.Fatalf("users of a public channel: %v", err)
	}
}

func TestPusherHTTPGoRejections(t *testing.T) {
	f, srv, good := sdkServer(t)

	bad := *good
	bad.Secret = "not-the-secret"
	if err := bad.Trigger("a", "e", "x"); sdkStatus(t, err) != 401 {
		t.Fatalf("bad secret: %v", err)
	}
	if _, err := bad.Channels(pusher.ChannelsParams{}); sdkStatus(t, err) != 401 {
		t.Fatalf("bad secret (GET): %v", err)
	}

	wrongApp := *good
	wrongApp.AppID = "999"
	if err := wrongApp.Trigger("a", "e", "x"); sdkStatus(t, err) != 404 {
		t.Fatalf("unknown app: %v", err)
	}

	big := *good
	big.OverrideMaxMessagePayloadKB = 100 // get past the SDK's own 10 KB check
	if err := big.Trigger("a", "e", strings.Repeat("x", 10*1024+1)); sdkStatus(t, err) != 413 {
		t.Fatalf("oversized data: %v", err)
	}

	// Requests the SDK cannot be made to send, crafted by hand.
	body := []byte(`{"name":"e","channels":["a"],"data":"x"}`)
	post := func(q map[string]string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+"/apps/3/events?"+protocol.EncodeQuery(q), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	stale := protocol.SignRequest(key, secret, "POST", "/apps/3/events", nil, body, time.Now().Add(-11*time.Minute))
	if s := post(stale); s != 401 {
		t.Fatalf("stale timestamp: %d", s)
	}
	wrongMD5 := protocol.SignRequest(key, secret, "POST", "/apps/3/events", nil, []byte(`{"other":1}`), time.Now())
	if s := post(wrongMD5); s != 401 {
		t.Fatalf("wrong body_md5: %d", s)
	}
	if s := post(protocol.SignRequest(key, secret, "POST", "/apps/3/events", nil, body, time.Now())); s != 200 {
		t.Fatalf("control request: %d", s)
	}
	if pub, _, _ := f.snapshot(); len(pub) != 1 {
		t.Fatalf("only the control request may publish, got %+v", pub)
	}
}
