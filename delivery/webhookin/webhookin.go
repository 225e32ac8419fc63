package webhookin

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pushersdk "github.com/pusher/pusher-http-go/v5"

	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/protocol"
)

// MaxBodyBytes bounds a webhook body. Pusher batches at most a few hundred
// small events per request.
const MaxBodyBytes = 1 << 20

// Config configures a Receiver.
type Config struct {
	// Key and Secret of the Pusher app; webhooks are signed with the secret.
	Key, Secret string
	// EncryptionMasterKeyBase64 lets pusher-http-go decrypt client events on
	// encrypted channels (optional).
	EncryptionMasterKeyBase64 string
	// Now is the clock for events without a time_ms (default time.Now).
	Now func() time.Time
	// MaxAge is the replay window: a webhook whose time_ms is further than this
	// from Now, either way, is refused (401), as is one without a time_ms (400),
	// and a webhook already accepted within the window is refused as a replay
	// (409). Pusher stamps time_ms when it sends and signs it with the body.
	// Default DefaultMaxAge; negative turns both checks off.
	MaxAge time.Duration
}

// DefaultMaxAge is Config.MaxAge's default: Pusher's own window for signed
// requests is ten minutes either way; five is ample for a webhook in flight.
const DefaultMaxAge = 5 * time.Minute

// maxSeen bounds the signatures remembered for replay checks (about 80 bytes
// each). Pusher sends a few webhooks a second per app; at the limit the oldest
// are forgotten first.
const maxSeen = 100_000

// Stats are the receiver's counters and the view's size.
type Stats struct {
	Received uint64 // webhook requests accepted
	Rejected uint64 // refused: bad signature, bad body, stale, replayed
	Events   uint64 // events applied
	// OccupiedChannels and PresenceMembers describe the current view.
	OccupiedChannels int
	PresenceMembers  int
}

// Receiver is the webhook endpoint and the view it maintains. Safe for
// concurrent use.
type Receiver struct {
	client *pushersdk.Client
	secret string
	now    func() time.Time
	maxAge time.Duration

	seenMu    sync.Mutex
	seen      map[[sha256.Size]byte]struct{} // signatures accepted within the window
	order     []seenEntry                    // seen from orderHead on, oldest time_ms first (mostly)
	orderHead int

	received, rejected, events atomic.Uint64

	mu       sync.RWMutex
	channels map[string]map[string]struct{} // occupied channel -> presence user ids

	// hub hands the view's events to watchers.
	hub lifecycle.Hub
}

// New returns a Receiver.
func New(cfg Config) (*Receiver, error) {
	if cfg.Key == "" || cfg.Secret == "" {
		return nil, errors.New("webhookin: key and secret are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	return &Receiver{
		maxAge:   cfg.MaxAge,
		seen:     make(map[[sha256.Size]byte]struct{}),
		client:   &pushersdk.Client{Key: cfg.Key, Secret: cfg.Secret, EncryptionMasterKeyBase64: cfg.EncryptionMasterKeyBase64},
		secret:   cfg.Secret,
		now:      cfg.Now,
		channels: make(map[string]map[string]struct{}),
	}, nil
}

// ServeHTTP handles POST /pusher/webhooks.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxBodyBytes))
	if err != nil {
		r.rejected.Add(1)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		writeJSON(w, http.StatusBadRequest, "cannot read body")
		return
	}
	hook, err := r.client.Webhook(req.Header, body)
	if err != nil {
		r.rejected.Add(1)
		if r.signed(req.Header, body) {
			writeJSON(w, http.StatusBadRequest, "malformed webhook body")
			return
		}
		writeJSON(w, http.StatusUnauthorized, "invalid webhook signature")
		return
	}
	if code, msg := r.fresh(req.Header.Get("X-Pusher-Signature"), hook.TimeMs); code != http.StatusOK {
		r.rejected.Add(1)
		writeJSON(w, code, msg)
		return
	}
	r.received.Add(1)
	t := r.now()
	if hook.TimeMs > 0 {
		t = time.UnixMilli(int64(hook.TimeMs))
	}
	for _, e := range hook.Events {
		r.apply(t, e)
	}
	writeJSON(w, http.StatusOK, "ok")
}

type seenEntry struct {
	key    [sha256.Size]byte
	expiry int64 // unix ms after which time_ms is out of the window anyway
}

// fresh checks a verified webhook's time_ms against the window and records its
// signature, refusing one already recorded. A signature is kept until its
// time_ms leaves the window, after which the time check refuses it.
func (r *Receiver) fresh(sig string, timeMs int) (int, string) {
	if r.maxAge < 0 {
		return http.StatusOK, ""
	}
	if timeMs <= 0 {
		return http.StatusBadRequest, "time_ms required"
	}
	now := r.now().UnixMilli()
	window := r.maxAge.Milliseconds()
	if d := now - int64(timeMs); d > window || d < -window {
		return http.StatusUnauthorized, "webhook outside the time window"
	}
	// Signatures are HMACs of whole bodies; hashing normalises their length
	// (and case) into a fixed key.
	key := sha256.Sum256([]byte(strings.ToLower(sig)))
	r.seenMu.Lock()
	defer r.seenMu.Unlock()
	if _, dup := r.seen[key]; dup {
		return http.StatusConflict, "webhook already received"
	}
	for r.orderHead < len(r.order) {
		e := r.order[r.orderHead]
		if e.expiry >= now && len(r.order)-r.orderHead < maxSeen {
			break
		}
		delete(r.seen, e.key)
		r.orderHead++
	}
	if r.orderHead > len(r.order)/2 {
		r.order = append(r.order[:0], r.order[r.orderHead:]...)
		r.orderHead = 0
	}
	r.seen[key] = struct{}{}
	r.order = append(r.order, seenEntry{key: key, expiry: int64(timeMs) + window})
	return http.StatusOK, ""
}

// signed reports whether the key and signature are right, to tell a bad
// signature (401) from a signed body pusher-http-go cannot parse (400).
func (r *Receiver) signed(h http.Header, body []byte) bool {
	ok := false
	for _, k := range h["X-Pusher-Key"] {
		ok = ok || k == r.client.Key
	}
	return ok && protocol.VerifySignature(r.secret, string(body), h.Get("X-Pusher-Signature"))
}

func writeJSON(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	key := "error"
	if code == http.StatusOK {
		key = "status"
	}
	_ = json.NewEncoder(w).Encode(map[string]string{key: msg})
}

func (r *Receiver) apply(t time.Time, e pushersdk.WebhookEvent) {
	var out []lifecycle.Event
	r.mu.Lock()
	switch e.Name {
	case protocol.WebhookChannelOccupied:
		if _, ok := r.channels[e.Channel]; !ok {
			r.channels[e.Channel] = map[string]struct{}{}
			out = append(out, lifecycle.Event{Type: lifecycle.ChannelOccupied, Time: t, Channel: e.Channel})
		}
	case protocol.WebhookChannelVacated:
		if members, ok := r.channels[e.Channel]; ok {
			// A vacated presence channel has no members left, whether or not
			// their member_removed arrived first.
			for uid := range members {
				out = append(out, lifecycle.Event{Type: lifecycle.MemberRemoved, Time: t, Channel: e.Channel, UserID: uid})
			}
			delete(r.channels, e.Channel)
			out = append(out, lifecycle.Event{Type: lifecycle.ChannelVacated, Time: t, Channel: e.Channel})
		}
	case protocol.WebhookMemberAdded:
		members, ok := r.channels[e.Channel]
		if !ok {
			// member_added can overtake channel_occupied; a channel with a
			// member is occupied.
			members = map[string]struct{}{}
			r.channels[e.Channel] = members
			out = append(out, lifecycle.Event{Type: lifecycle.ChannelOccupied, Time: t, Channel: e.Channel})
		}
		if _, dup := members[e.UserID]; !dup {
			members[e.UserID] = struct{}{}
			out = append(out, lifecycle.Event{Type: lifecycle.MemberAdded, Time: t, Channel: e.Channel, UserID: e.UserID})
		}
	case protocol.WebhookMemberRemoved:
		if members, ok := r.channels[e.Channel]; ok {
			if _, was := members[e.UserID]; was {
				delete(members, e.UserID)
				out = append(out, lifecycle.Event{Type: lifecycle.MemberRemoved, Time: t, Channel: e.Channel, UserID: e.UserID})
			}
		}
	}
	// Emitted under the view's lock so that watchers see events in the
	// order the view applied them, even with concurrent requests.
	for _, ev := range out {
		r.hub.Emit(ev)
	}
	r.mu.Unlock()
	r.events.Add(1)
}

// Stats returns the counters and the view's size.
func (r *Receiver) Stats() Stats {
	st := Stats{Received: r.received.Load(), Rejected: r.rejected.Load(), Events: r.events.Load()}
	r.mu.RLock()
	st.OccupiedChannels = len(r.channels)
	for _, m := range r.channels {
		st.PresenceMembers += len(m)
	}
	r.mu.RUnlock()
	return st
}

// Channel is one channel of the view.
type Channel struct {
	Name string
	// Users are the presence user ids, sorted (empty for other channels).
	Users []string
}

// Channels lists the occupied channels of the view whose name starts with
// prefix, sorted by name.
func (r *Receiver) Channels(prefix string) []Channel {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Channel, 0, len(r.channels))
	for name, members := range r.channels {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		c := Channel{Name: name, Users: make([]string, 0, len(members))}
		for u := range members {
			c.Users = append(c.Users, u)
		}
		sort.Strings(c.Users)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Occupied reports whether the view has the channel occupied.
func (r *Receiver) Occupied(channel string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.channels[channel]
	return ok
}
