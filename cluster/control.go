package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/milequest/pushercm/errcode"
)

// ControlChannel is the Broker channel every node listens to for requests
// from the other nodes (Control). Pusher channel names cannot start with '#',
// so no client can subscribe to it.
const ControlChannel = "#control"

// controlClockSkew is how far past its deadline a request is still served, for
// nodes whose clocks disagree a little.
const controlClockSkew = 2 * time.Second

// Request is one node's question to others.
type Request struct {
	ID   string   `json:"id"`
	From string   `json:"from"`
	To   []string `json:"to"`
	Op   string   `json:"op"`
	Body []byte   `json:"body,omitempty"`
	// Deadline is the asker's deadline (unix ms); a request received later is
	// dropped, since nobody waits for its answer.
	Deadline int64 `json:"deadline"`
}

// Reply is one node's answer: Body, or an error (Code, Error).
type Reply struct {
	Node  string `json:"node"`
	Body  []byte `json:"body,omitempty"`
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// Err is the answering node's error, as an *errcode.Error with its code, nil
// on success.
func (r Reply) Err() error {
	if r.Code == "" {
		return nil
	}
	return &errcode.Error{Code: errcode.Code(r.Code), Message: r.Error, Public: r.Error}
}

// ControlHandler answers a request's op and body on this node.
type ControlHandler func(ctx context.Context, op string, body []byte) ([]byte, error)

// Control is request/response between nodes with Redis in the middle and no
// node-to-node link. A request is published once on ControlChannel through
// the Broker (one publication whatever the number of nodes; the Broker resubscribes
// after a Redis reconnect) naming the nodes that must answer; each answers by
// RPUSH to the request's own reply list, which the asker drains with BLPOP.
//
// Why a list and not a reply pub/sub channel: a list keeps a reply that
// arrives before the asker waits for it, so there is no subscribe-before-ask
// race and no per-request SUBSCRIBE; the list expires with the request.
// Requests past their deadline (one caught up from the Broker's history after
// a long reconnect) are dropped: their asker has given up, and an operation
// such as a disconnect must not run late. A request caught up in time is
// served: the Broker also recovers a channel's first publications when the
// channel's history starts after a node subscribed.
type Control struct {
	client  rueidis.Client
	keys    keyspace
	self    string
	publish func(ctx context.Context, payload []byte) error
	handle  ControlHandler

	idBase string
	seq    atomic.Uint64
}

// NewControl makes the node's Control. publish sends a payload on
// ControlChannel (Broker.Publish); handle answers the requests meant for this
// node. Feed it the ControlChannel messages with Receive.
func NewControl(client rueidis.Client, cfg Config, publish func(ctx context.Context, payload []byte) error, handle ControlHandler) *Control {
	cfg = cfg.WithDefaults()
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Control{client: client, keys: keyspace{cfg.Prefix}, self: cfg.NodeID, publish: publish, handle: handle,
		idBase: cfg.NodeID + "." + hex.EncodeToString(b[:]) + "."}
}

// ErrNoAnswer is returned (wrapped) by Ask when some nodes did not answer
// before the deadline; the replies that did arrive come with it.
var ErrNoAnswer = errors.New("cluster: nodes did not answer in time")

// Ask sends op to nodes and collects their replies until every node answered,
// enough (when not nil) says a reply settles the question, or ctx ends (then
// the error wraps ErrNoAnswer and names the silent nodes). ctx must carry a
// deadline. Asking no node answers nothing at once.
func (c *Control) Ask(ctx context.Context, nodes []string, op string, body []byte, enough func(Reply) bool) ([]Reply, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, errors.New("cluster: Ask needs a deadline")
	}
	req := Request{ID: c.idBase + strconv.FormatUint(c.seq.Add(1), 36), From: c.self, To: nodes, Op: op, Body: body, Deadline: deadline.UnixMilli()}
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if err := c.publish(ctx, payload); err != nil {
		return nil, err
	}
	key := c.keys.reply(req.ID)
	waiting := slices.Clone(nodes)
	var out []Reply
	for len(waiting) > 0 {
		left := time.Until(deadline)
		if left < 10*time.Millisecond {
			break
		}
		// BLPOP's own timeout ends the wait on the server; ctx is the backstop.
		kv, err := c.client.Do(ctx, c.client.B().Blpop().Key(key).Timeout(left.Seconds()).Build().Pin()).AsStrSlice()
		if rueidis.IsRedisNil(err) || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			break // rueidis may see the deadline a moment before ctx says so
		}
		if err != nil {
			return out, fmt.Errorf("%w: waiting for %s replies: %w", ErrUnavailable, op, err)
		}
		var r Reply
		if len(kv) != 2 || json.Unmarshal([]byte(kv[1]), &r) != nil {
			continue
		}
		i := slices.Index(waiting, r.Node)
		if i < 0 {
			continue
		}
		waiting = slices.Delete(waiting, i, i+1)
		out = append(out, r)
		if enough != nil && enough(r) {
			return out, nil
		}
	}
	if len(waiting) > 0 {
		return out, fmt.Errorf("%w: %s: %v", ErrNoAnswer, op, waiting)
	}
	return out, nil
}

// Receive handles one ControlChannel message: a request for this node is
// answered in its own goroutine (Receive never blocks the Broker).
func (c *Control) Receive(m Message) {
	var req Request
	if json.Unmarshal(m.Payload, &req) != nil || !slices.Contains(req.To, c.self) {
		return
	}
	deadline := time.UnixMilli(req.Deadline)
	if time.Now().After(deadline.Add(controlClockSkew)) {
		return
	}
	go func() {
		ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(controlClockSkew))
		defer cancel()
		r := Reply{Node: c.self}
		body, err := c.handle(ctx, req.Op, req.Body)
		if err != nil {
			r.Code = string(errcode.Of(err))
			r.Error = err.Error()
			if e, ok := errcode.As(err); ok && e.Public != "" {
				r.Error = e.Public
			}
			if r.Code == string(errcode.Internal) {
				r.Error = "internal error on node " + c.self
			}
		} else {
			r.Body = body
		}
		b, _ := json.Marshal(r)
		key := c.keys.reply(req.ID)
		ttl := max(time.Until(deadline)+controlClockSkew, time.Second)
		for _, res := range c.client.DoMulti(ctx,
			c.client.B().Rpush().Key(key).Element(string(b)).Build().Pin(),
			c.client.B().Pexpire().Key(key).Milliseconds(ttl.Milliseconds()).Build().Pin()) {
			if res.Error() != nil {
				return // the asker times out and says which node was silent
			}
		}
	}()
}
