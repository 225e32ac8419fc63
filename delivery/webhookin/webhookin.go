package webhookin

import (
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

	"github.com/milequest/pushercm/edge"
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
}

// Stats are the receiver's counters and the view's size.
type Stats struct {
	Received uint64 // webhook requests accepted
	Rejected uint64 // refused: bad signature, bad body
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

	received, rejected, events atomic.Uint64

	mu       sync.RWMutex
	channels map[string]map[string]struct{} // occupied channel -> presence user ids

	watchMu  sync.Mutex
	watchers map[*Watcher]struct{}
	closed   bool
}

// New returns a Receiver.
func New(cfg Config) (*Receiver, error) {
	if cfg.Key == "" || cfg.Secret == "" {
		return nil, errors.New("webhookin: key and secret are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Receiver{
		client:   &pushersdk.Client{Key: cfg.Key, Secret: cfg.Secret, EncryptionMasterKeyBase64: cfg.EncryptionMasterKeyBase64},
		secret:   cfg.Secret,
		now:      cfg.Now,
		channels: make(map[string]map[string]struct{}),
		watchers: make(map[*Watcher]struct{}),
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
	var out []edge.Event
	r.mu.Lock()
	switch e.Name {
	case protocol.WebhookChannelOccupied:
		if _, ok := r.channels[e.Channel]; !ok {
			r.channels[e.Channel] = map[string]struct{}{}
			out = append(out, edge.Event{Type: edge.ChannelOccupied, Time: t, Channel: e.Channel})
		}
	case protocol.WebhookChannelVacated:
		if members, ok := r.channels[e.Channel]; ok {
			// A vacated presence channel has no members left, whether or not
			// their member_removed arrived first.
			for uid := range members {
				out = append(out, edge.Event{Type: edge.MemberRemoved, Time: t, Channel: e.Channel, UserID: uid})
			}
			delete(r.channels, e.Channel)
			out = append(out, edge.Event{Type: edge.ChannelVacated, Time: t, Channel: e.Channel})
		}
	case protocol.WebhookMemberAdded:
		members, ok := r.channels[e.Channel]
		if !ok {
			// member_added can overtake channel_occupied; a channel with a
			// member is occupied.
			members = map[string]struct{}{}
			r.channels[e.Channel] = members
			out = append(out, edge.Event{Type: edge.ChannelOccupied, Time: t, Channel: e.Channel})
		}
		if _, dup := members[e.UserID]; !dup {
			members[e.UserID] = struct{}{}
			out = append(out, edge.Event{Type: edge.MemberAdded, Time: t, Channel: e.Channel, UserID: e.UserID})
		}
	case protocol.WebhookMemberRemoved:
		if members, ok := r.channels[e.Channel]; ok {
			if _, was := members[e.UserID]; was {
				delete(members, e.UserID)
				out = append(out, edge.Event{Type: edge.MemberRemoved, Time: t, Channel: e.Channel, UserID: e.UserID})
			}
		}
	}
	// Emitted under the view's lock so that watchers see events in the
	// order the view applied them, even with concurrent requests.
	for _, ev := range out {
		r.emit(ev)
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
