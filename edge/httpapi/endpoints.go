package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/protocol"
)

// Info attributes (§5.1).
const (
	attrUserCount         = "user_count"
	attrSubscriptionCount = "subscription_count"
	attrCache             = "cache"
)

// attrs is a parsed info parameter.
type attrs struct {
	userCount, subscriptionCount, cache bool
}

func (a attrs) any() bool { return a.userCount || a.subscriptionCount || a.cache }

// parseAttrs parses a comma-separated info list, accepting only the allowed names.
func parseAttrs(info string, allowed ...string) (attrs, *apiError) {
	var a attrs
	for name := range strings.SplitSeq(info, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(allowed, name) {
			return attrs{}, errorf(http.StatusBadRequest, "unsupported info attribute %q", name)
		}
		switch name {
		case attrUserCount:
			a.userCount = true
		case attrSubscriptionCount:
			a.subscriptionCount = true
		case attrCache:
			a.cache = true
		}
	}
	return a, nil
}

// triggerBody is one event of POST events or of a batch.
type triggerBody struct {
	Name     string          `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channels []string        `json:"channels"`
	Channel  string          `json:"channel"`
	SocketID string          `json:"socket_id"`
	Info     string          `json:"info"`

	// dataString is data already decoded from a JSON string (dataSet), by
	// fastTrigger; encoding/json leaves both unset and fills Data.
	dataString string
	dataSet    bool
}

// trigger is a validated triggerBody.
type trigger struct {
	name, data, socketID string
	channels             []string // ordinary channels, deduplicated, in request order
	users                []string // user ids of #server-to-user- channels
	info                 attrs
}

func (h *handler) validateTrigger(tb triggerBody) (*trigger, *apiError) {
	t := &trigger{name: tb.Name, socketID: tb.SocketID}
	if t.name == "" {
		return nil, errorf(http.StatusBadRequest, "missing event name")
	}
	if len(t.name) > h.limits.MaxEventNameLength {
		return nil, errorf(http.StatusBadRequest, "event name over %d characters", h.limits.MaxEventNameLength)
	}
	names := tb.Channels
	if len(names) == 0 && tb.Channel != "" {
		names = []string{tb.Channel}
	}
	if len(names) == 0 {
		return nil, errorf(http.StatusBadRequest, "missing channels")
	}
	if len(names) > h.limits.MaxChannelsPerTrigger {
		return nil, errorf(http.StatusBadRequest, "more than %d channels", h.limits.MaxChannelsPerTrigger)
	}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		ch, err := protocol.ParseChannel(name, h.limits.MaxChannelNameLength)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid channel name %q", truncate(name))
		}
		if ch.Kind == protocol.KindServerToUser {
			if len(ch.UserID) > h.limits.MaxUserIDLength {
				return nil, errorf(http.StatusBadRequest, "user id over %d characters", h.limits.MaxUserIDLength)
			}
			t.users = append(t.users, ch.UserID)
			continue
		}
		t.channels = append(t.channels, name)
	}
	data := tb.dataString
	if !tb.dataSet {
		var aerr *apiError
		if data, aerr = decodeData(tb.Data); aerr != nil {
			return nil, aerr
		}
	}
	if len(data) > h.limits.MaxPayloadBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "event data over %d bytes", h.limits.MaxPayloadBytes)
	}
	t.data = data
	if t.socketID != "" && !socketIDPattern.MatchString(t.socketID) {
		return nil, errorf(http.StatusBadRequest, "invalid socket_id")
	}
	info, aerr := parseAttrs(tb.Info, attrUserCount, attrSubscriptionCount)
	if aerr != nil {
		return nil, aerr
	}
	t.info = info
	return t, nil
}

// decodeData returns the event data string. The SDKs always send a JSON string; any
// other JSON value is forwarded as its compact text rather than rejected.
func decodeData(raw json.RawMessage) (string, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", errorf(http.StatusBadRequest, "missing data")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errorf(http.StatusBadRequest, "invalid data")
		}
		return s, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", errorf(http.StatusBadRequest, "invalid data")
	}
	// encoding/json lets invalid UTF-8 through inside strings; the string
	// form above turns it into U+FFFD, and so does this, so that the data
	// is the same whichever form it came in, and valid UTF-8 on the socket.
	out := buf.String()
	if !utf8.ValidString(out) {
		out = strings.ToValidUTF8(out, "\uFFFD")
	}
	return out, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func decodeJSON(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(http.StatusBadRequest, "missing JSON body")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(http.StatusBadRequest, "invalid JSON body")
	}
	return nil
}

// publish delivers a validated trigger.
func (h *handler) publish(r *http.Request, t *trigger) *apiError {
	if len(t.channels) > 0 {
		_, err := h.b.Publish(r.Context(), Message{Channels: t.channels, Event: t.name, Data: t.data, ExcludeSocketID: t.socketID})
		if err != nil {
			return h.backendError("publish", err)
		}
	}
	for _, u := range t.users {
		if _, err := h.b.SendToUser(r.Context(), u, t.name, t.data); err != nil {
			return h.backendError("send_to_user", err)
		}
	}
	return nil
}

// countAttrs returns the attributes asked for about a channel after a trigger.
func (h *handler) countAttrs(ctx context.Context, name string, a attrs) map[string]int {
	out := map[string]int{}
	info, err := h.b.Channel(ctx, name)
	if err != nil { // unoccupied: counts are zero
		info = ChannelInfo{Name: name}
	}
	if a.userCount && isPresence(name) {
		out[attrUserCount] = info.UserCount
	}
	if a.subscriptionCount {
		out[attrSubscriptionCount] = info.SubscriptionCount
	}
	return out
}

func isPresence(name string) bool {
	kind, _ := protocol.KindOf(name)
	return kind == protocol.KindPresence
}

func (h *handler) events(r *http.Request, body []byte) (any, *apiError) {
	tb, ok := fastTrigger(body)
	if !ok {
		if aerr := decodeJSON(body, &tb); aerr != nil {
			return nil, aerr
		}
	}
	t, aerr := h.validateTrigger(tb)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := h.publish(r, t); aerr != nil {
		return nil, aerr
	}
	if !t.info.any() {
		return struct{}{}, nil
	}
	chans := make(map[string]map[string]int, len(t.channels))
	for _, name := range t.channels {
		chans[name] = h.countAttrs(r.Context(), name, t.info)
	}
	return map[string]any{"channels": chans}, nil
}

func (h *handler) batchEvents(r *http.Request, body []byte) (any, *apiError) {
	var req struct {
		Batch []triggerBody `json:"batch"`
	}
	var ok bool
	if req.Batch, ok = fastBatch(body, h.limits.MaxBatchSize); !ok {
		if aerr := decodeJSON(body, &req); aerr != nil {
			return nil, aerr
		}
	}
	if len(req.Batch) == 0 {
		return nil, errorf(http.StatusBadRequest, "missing batch")
	}
	if len(req.Batch) > h.limits.MaxBatchSize {
		return nil, errorf(http.StatusBadRequest, "more than %d events in batch", h.limits.MaxBatchSize)
	}
	// Validate everything first: a rejected batch publishes nothing.
	ts := make([]*trigger, len(req.Batch))
	wantInfo := false
	for i, tb := range req.Batch {
		t, aerr := h.validateTrigger(tb)
		if aerr != nil {
			aerr.msg = "batch[" + strconv.Itoa(i) + "]: " + aerr.msg
			return nil, aerr
		}
		ts[i] = t
		wantInfo = wantInfo || t.info.any()
	}
	for _, t := range ts {
		if aerr := h.publish(r, t); aerr != nil {
			return nil, aerr
		}
	}
	if !wantInfo {
		return struct{}{}, nil
	}
	out := make([]map[string]int, len(ts))
	for i, t := range ts {
		out[i] = map[string]int{}
		if t.info.any() && len(t.channels) > 0 {
			out[i] = h.countAttrs(r.Context(), t.channels[0], t.info)
		}
	}
	return map[string]any{"batch": out}, nil
}

func (h *handler) channels(r *http.Request, params map[string]string) (any, *apiError) {
	prefix := params["filter_by_prefix"]
	a, aerr := parseAttrs(params["info"], attrUserCount, attrSubscriptionCount)
	if aerr != nil {
		return nil, aerr
	}
	// Pusher: user_count is only meaningful when the list is restricted to presence channels.
	if a.userCount && !strings.HasPrefix(prefix, "presence-") {
		return nil, errorf(http.StatusBadRequest, "info=user_count requires filter_by_prefix=presence-")
	}
	list, err := h.b.Channels(r.Context(), prefix)
	if err != nil {
		return nil, h.backendError("channels", err)
	}
	out := make(map[string]map[string]int, len(list))
	for _, c := range list {
		if !c.Occupied || strings.HasPrefix(c.Name, "#") || !strings.HasPrefix(c.Name, prefix) {
			continue // per-user channels are internal plumbing, not app channels
		}
		item := map[string]int{}
		if a.userCount && isPresence(c.Name) {
			item[attrUserCount] = c.UserCount
		}
		if a.subscriptionCount {
			item[attrSubscriptionCount] = c.SubscriptionCount
		}
		out[c.Name] = item
	}
	return map[string]any{"channels": out}, nil
}

func (h *handler) parseChannelName(name string) (protocol.Channel, *apiError) {
	ch, err := protocol.ParseChannel(name, h.limits.MaxChannelNameLength)
	if err != nil || ch.Kind == protocol.KindServerToUser {
		return protocol.Channel{}, errorf(http.StatusBadRequest, "invalid channel name %q", truncate(name))
	}
	return ch, nil
}

func (h *handler) channel(r *http.Request, name string, params map[string]string) (any, *apiError) {
	ch, aerr := h.parseChannelName(name)
	if aerr != nil {
		return nil, aerr
	}
	a, aerr := parseAttrs(params["info"], attrUserCount, attrSubscriptionCount, attrCache)
	if aerr != nil {
		return nil, aerr
	}
	if a.userCount && !ch.IsPresence() {
		return nil, errorf(http.StatusBadRequest, "user_count is only available for presence channels")
	}
	if a.cache && !ch.Cache {
		return nil, errorf(http.StatusBadRequest, "cache is only available for cache channels")
	}
	info, err := h.b.Channel(r.Context(), name)
	if err != nil {
		if errcode.Of(err) != errcode.NotFound {
			return nil, h.backendError("channel", err)
		}
		info = ChannelInfo{Name: name}
	}
	out := map[string]any{"occupied": info.Occupied}
	if info.Occupied {
		if a.userCount {
			out[attrUserCount] = info.UserCount
		}
		if a.subscriptionCount {
			out[attrSubscriptionCount] = info.SubscriptionCount
		}
	}
	if a.cache {
		if c := info.Cache; c != nil {
			out[attrCache] = map[string]any{"data": c.Data, "ttl": int(math.Ceil(c.TTL.Seconds()))}
		} else {
			out[attrCache] = nil
		}
	}
	return out, nil
}

type user struct {
	ID string `json:"id"`
}

func (h *handler) users(r *http.Request, name string) (any, *apiError) {
	ch, aerr := h.parseChannelName(name)
	if aerr != nil {
		return nil, aerr
	}
	if !ch.IsPresence() {
		return nil, errorf(http.StatusBadRequest, "users are only available for presence channels")
	}
	members, err := h.b.PresenceMembers(r.Context(), name)
	if err != nil && errcode.Of(err) != errcode.NotFound {
		return nil, h.backendError("users", err)
	}
	list := make([]user, 0, len(members))
	for _, m := range members {
		list = append(list, user{ID: m.UserID})
	}
	return map[string]any{"users": list}, nil
}

func (h *handler) terminate(r *http.Request, userID string) (any, *apiError) {
	if userID == "" || len(userID) > h.limits.MaxUserIDLength {
		return nil, errorf(http.StatusBadRequest, "invalid user id")
	}
	if _, err := h.b.TerminateUser(r.Context(), userID); err != nil {
		return nil, h.backendError("terminate", err)
	}
	return struct{}{}, nil
}

// countEvents tells the limiter how many events a publish carries. It is only called
// for authenticated requests; an undecodable body counts as one and is rejected later.
func countEvents(kind routeKind, body []byte) int {
	if kind != routeBatch {
		return 1
	}
	var req struct {
		Batch []json.RawMessage `json:"batch"`
	}
	if json.Unmarshal(body, &req) != nil || len(req.Batch) == 0 {
		return 1
	}
	return len(req.Batch)
}
