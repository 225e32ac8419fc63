package webhookin_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pushersdk "github.com/pusher/pusher-http-go/v5"
	"go.uber.org/goleak"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/delivery/webhookin"
	"github.com/milequest/pushercm/lifecycle"
)

// IgnoreCurrent: goroutines that imported packages start at init are not
// the receiver's.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

const (
	key    = "app-key"
	secret = "app-secret"
)

// hookTime is the time_ms of the test bodies and the receivers' clock.
const hookTime = 1700000000000

func newReceiver(t *testing.T) *webhookin.Receiver {
	t.Helper()
	r, err := webhookin.New(webhookin.Config{Key: key, Secret: secret, Now: func() time.Time { return time.UnixMilli(hookTime) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

type ev = pushersdk.WebhookEvent

func body(events ...ev) []byte {
	return bodyAt(hookTime, events...)
}

func bodyAt(ms int, events ...ev) []byte {
	b, _ := json.Marshal(pushersdk.Webhook{TimeMs: ms, Events: events})
	return b
}

func post(t *testing.T, r http.Handler, method, hkey, sig string, b []byte) int {
	t.Helper()
	req := httptest.NewRequest(method, "/pusher/webhooks", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if hkey != "" {
		req.Header.Set("X-Pusher-Key", hkey)
	}
	if sig != "" {
		req.Header.Set("X-Pusher-Signature", sig)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	return rec.Code
}

func TestRefusals(t *testing.T) {
	occupied := body(ev{Name: "channel_occupied", Channel: "forged"})
	tests := []struct {
		name   string
		method string
		key    string
		sig    string
		body   []byte
		want   int
	}{
		{"no signature", http.MethodPost, key, "", occupied, http.StatusUnauthorized},
		{"wrong secret", http.MethodPost, key, sign("other", occupied), occupied, http.StatusUnauthorized},
		{"wrong key", http.MethodPost, "other-key", sign(secret, occupied), occupied, http.StatusUnauthorized},
		{"no key", http.MethodPost, "", sign(secret, occupied), occupied, http.StatusUnauthorized},
		{"signature of another body", http.MethodPost, key, sign(secret, []byte("{}")), occupied, http.StatusUnauthorized},
		{"signed garbage", http.MethodPost, key, sign(secret, []byte("not json")), []byte("not json"), http.StatusBadRequest},
		{"too large", http.MethodPost, key, "x", bytes.Repeat([]byte(" "), webhookin.MaxBodyBytes+1), http.StatusRequestEntityTooLarge},
		{"GET", http.MethodGet, key, sign(secret, occupied), occupied, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t)
			if got := post(t, r, tc.method, tc.key, tc.sig, tc.body); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			if st := r.Stats(); st.OccupiedChannels != 0 || st.Received != 0 {
				t.Fatalf("a refused webhook changed the view: %+v", st)
			}
		})
	}
}

func TestViewAndWatchers(t *testing.T) {
	r := newReceiver(t)
	w := r.Watch(16)
	defer w.Close()
	send := func(events ...ev) {
		t.Helper()
		b := body(events...)
		if got := post(t, r, http.MethodPost, key, sign(secret, b), b); got != http.StatusOK {
			t.Fatalf("status %d", got)
		}
	}
	send(ev{Name: "member_added", Channel: "presence-a", UserID: "u1"}) // overtakes channel_occupied
	send(ev{Name: "channel_occupied", Channel: "presence-a"}, ev{Name: "member_added", Channel: "presence-a", UserID: "u2"},
		ev{Name: "channel_occupied", Channel: "public-b"}, ev{Name: "client_event", Channel: "presence-a", Event: "client-x", Data: "{}"})
	if st := r.Stats(); st.OccupiedChannels != 2 || st.PresenceMembers != 2 || st.Received != 2 || st.Events != 5 {
		t.Fatalf("stats %+v", st)
	}
	chs := r.Channels("presence-")
	if len(chs) != 1 || strings.Join(chs[0].Users, ",") != "u1,u2" || !r.Occupied("public-b") {
		t.Fatalf("channels %+v", chs)
	}
	send(ev{Name: "member_removed", Channel: "presence-a", UserID: "u1"}, ev{Name: "channel_vacated", Channel: "presence-a"},
		ev{Name: "channel_vacated", Channel: "never-occupied"})
	if st := r.Stats(); st.OccupiedChannels != 1 || st.PresenceMembers != 0 {
		t.Fatalf("stats after vacate %+v", st)
	}
	type got struct {
		typ       lifecycle.EventType
		ch, user  string
		timestamp bool
	}
	want := []got{
		{lifecycle.ChannelOccupied, "presence-a", "", true},
		{lifecycle.MemberAdded, "presence-a", "u1", true},
		{lifecycle.MemberAdded, "presence-a", "u2", true},
		{lifecycle.ChannelOccupied, "public-b", "", true},
		{lifecycle.MemberRemoved, "presence-a", "u1", true},
		{lifecycle.MemberRemoved, "presence-a", "u2", true}, // vacated implies every member left
		{lifecycle.ChannelVacated, "presence-a", "", true},
	}
	for i, wnt := range want {
		select {
		case e := <-w.C():
			g := got{e.Type, e.Channel, e.UserID, e.Time.Equal(time.UnixMilli(hookTime))}
			if g != wnt {
				t.Fatalf("event %d: %+v, want %+v", i, g, wnt)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d missing", i)
		}
	}
	select {
	case e := <-w.C():
		t.Fatalf("unexpected event %+v", e)
	default:
	}
}

func TestSlowWatcherIsCutOff(t *testing.T) {
	r := newReceiver(t)
	slow, fast := r.Watch(2), r.Watch(100)
	defer fast.Close()
	b := body(ev{Name: "channel_occupied", Channel: "a"}, ev{Name: "channel_occupied", Channel: "b"}, ev{Name: "channel_occupied", Channel: "c"})
	if got := post(t, r, http.MethodPost, key, sign(secret, b), b); got != http.StatusOK {
		t.Fatalf("status %d", got)
	}
	n := 0
	for range slow.C() {
		n++
	}
	if n != 2 || !errors.Is(slow.Err(), lifecycle.ErrLagged) {
		t.Fatalf("slow watcher got %d events, err %v", n, slow.Err())
	}
	for i := range 3 {
		if e := <-fast.C(); e.Type != lifecycle.ChannelOccupied {
			t.Fatalf("fast event %d: %+v", i, e)
		}
	}
	if fast.Err() != nil {
		t.Fatal(fast.Err())
	}
	r.Close()
	if _, open := <-fast.C(); open || !errors.Is(fast.Err(), webhookin.ErrClosed) || !errors.Is(fast.Err(), delivery.ErrUnavailable) {
		t.Fatalf("after Close: open=%v err=%v", open, fast.Err())
	}
	if w := r.Watch(1); !errors.Is(w.Err(), webhookin.ErrClosed) {
		t.Fatalf("watch after close: %v", w.Err())
	}
}

// TestSenderCompatibility: what pusher-http-go's own client would accept is
// what the receiver accepts (the receiver uses Webhook() itself; this pins
// that a body signed the way Pusher signs passes).
func TestSenderCompatibility(t *testing.T) {
	c := pushersdk.Client{Key: key, Secret: secret}
	b := body(ev{Name: "channel_occupied", Channel: "x"})
	h := http.Header{"X-Pusher-Key": {key}, "X-Pusher-Signature": {sign(secret, b)}}
	if _, err := c.Webhook(h, b); err != nil {
		t.Fatalf("pusher-http-go refuses the test's signature: %v", err)
	}
}

// TestReplayAndStale: a signed webhook is accepted once, and only while its
// time_ms is within MaxAge of the receiver's clock. A replay (of any webhook
// still remembered) or a stale or future one is refused, counted as rejected,
// and changes nothing.
func TestReplayAndStale(t *testing.T) {
	var now atomic.Int64
	now.Store(hookTime)
	r, err := webhookin.New(webhookin.Config{Key: key, Secret: secret, MaxAge: time.Minute,
		Now: func() time.Time { return time.UnixMilli(now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	send := func(b []byte, want int) {
		t.Helper()
		if got := post(t, r, http.MethodPost, key, sign(secret, b), b); got != want {
			t.Fatalf("status %d, want %d", got, want)
		}
	}
	added := body(ev{Name: "member_added", Channel: "presence-a", UserID: "u1"})
	send(added, http.StatusOK)
	send(added, http.StatusConflict)
	removed := bodyAt(hookTime+1, ev{Name: "member_removed", Channel: "presence-a", UserID: "u1"})
	send(removed, http.StatusOK)
	// Replaying the join would bring the member back.
	send(added, http.StatusConflict)
	send(removed, http.StatusConflict)
	// Outside the window, either way (the clock is one minute in).
	send(bodyAt(hookTime-61_000, ev{Name: "member_added", Channel: "presence-a", UserID: "u2"}), http.StatusUnauthorized)
	send(bodyAt(hookTime+61_000, ev{Name: "channel_occupied", Channel: "future"}), http.StatusUnauthorized)
	send(bodyAt(0, ev{Name: "channel_occupied", Channel: "undated"}), http.StatusBadRequest)
	if st := r.Stats(); st.Received != 2 || st.Rejected != 6 || st.Events != 2 || st.PresenceMembers != 0 || st.OccupiedChannels != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Once the window has passed, the replay is refused as stale, and the
	// signatures are forgotten at the next accepted webhook.
	now.Add(2 * time.Minute.Milliseconds())
	send(added, http.StatusUnauthorized)
	if st := r.Stats(); st.Received != 2 || st.Rejected != 7 || st.PresenceMembers != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := r.Remembered(); n != 2 {
		t.Fatalf("%d signatures remembered, want 2", n)
	}
	send(bodyAt(int(now.Load()), ev{Name: "channel_occupied", Channel: "later"}), http.StatusOK)
	if n := r.Remembered(); n != 1 {
		t.Fatalf("%d signatures remembered, want 1 (the expired ones dropped)", n)
	}
}

// TestReplayWindowOff: a negative MaxAge turns both checks off.
func TestReplayWindowOff(t *testing.T) {
	r, err := webhookin.New(webhookin.Config{Key: key, Secret: secret, MaxAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := bodyAt(1, ev{Name: "channel_occupied", Channel: "old"})
	for range 2 {
		if got := post(t, r, http.MethodPost, key, sign(secret, b), b); got != http.StatusOK {
			t.Fatalf("status %d", got)
		}
	}
}
