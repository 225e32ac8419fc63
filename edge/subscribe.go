package edge

import (
	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/protocol"
)

// subError is a subscription refusal with the pusher:subscription_error fields.
type subError struct {
	base   error
	typ    string
	msg    string
	status int
}

func (e *subError) Error() string { return e.msg }
func (e *subError) Unwrap() error { return e.base }

// pending collects lifecycle events and webhooks produced under hub.mu, dispatched
// after it is released.
type pending struct {
	evs   []lifecycle.Event
	hooks []protocol.WebhookEvent
	// leaves are reported to the cluster (when there is one) afterwards.
	leaves []clusterOp
}

func (s *Server) flush(p *pending) {
	if len(p.leaves) > 0 {
		s.clusterLeaves(p.leaves)
		p.leaves = nil
	}
	for _, e := range p.evs {
		s.emit(e)
	}
	if w := s.opts.webhooks; w != nil {
		for _, h := range p.hooks {
			w.Notify(h)
			s.emitWebhook(h)
		}
	}
}

// emitWebhook tells message watchers that a webhook was queued.
func (s *Server) emitWebhook(h protocol.WebhookEvent) {
	if s.watchingMessages() {
		s.emit(lifecycle.Event{Type: lifecycle.Webhook, Time: s.opts.now(), Name: h.Name, Channel: h.Channel, SocketID: h.SocketID, UserID: h.UserID})
	}
}

// subscribe joins c to ch; member is the presence identity (nil for other kinds). It
// sends subscription_succeeded, member_added to the others, and the cache replay or
// miss. Joining twice is idempotent and answers success again.
//
// clientEvents is what the subscription's auth grants; false records the channel as
// subscribe-only, so the socket's client events there are refused. Joining again
// replaces the grant with the newer one.
func (s *Server) subscribe(c *conn, ch protocol.Channel, member *protocol.Member, clientEvents bool) error {
	if s.opts.cluster != nil && ch.Kind != protocol.KindServerToUser {
		return s.subscribeCluster(c, ch, member, clientEvents)
	}
	now := s.opts.now()
	var p pending
	joined, err := s.hub.join(c, ch, member, clientEvents, now, &p)
	if err != nil || !joined {
		return err
	}
	uid := ""
	if member != nil {
		uid = member.UserID
	}
	p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.Subscribed, Time: now, SocketID: c.id, UserID: uid, Channel: ch.Name})
	s.flush(&p)
	return nil
}

// unsubscribe removes c from channel name; unknown channels are ignored (Pusher sends
// no reply to pusher:unsubscribe).
func (s *Server) unsubscribe(c *conn, name string) bool {
	var p pending
	ok := s.hub.leave(c, name, &p)
	s.flush(&p)
	return ok
}

// removeConn takes c out of the hub (implicit unsubscribe of every channel). Idempotent.
func (s *Server) removeConn(c *conn, code int, reason string) {
	var p pending
	if s.hub.remove(c, &p) {
		s.afterRemove(c, code, reason, &p)
	}
}

// afterRemove releases c's slot and reports its removal (removeLocked's pending
// events, then Disconnected).
func (s *Server) afterRemove(c *conn, code int, reason string, p *pending) {
	s.release(c.clientKey)
	p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.Disconnected, Time: s.opts.now(), SocketID: c.id, UserID: c.userID, Code: code, Reason: reason})
	s.flush(p)
}
