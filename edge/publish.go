package edge

import (
	"context"
	"fmt"
	"time"

	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/protocol"
)

// Message is one publish: Event with Data to every subscriber of Channels except the
// socket ExcludeSocketID. Channels named #server-to-user-{id} go to that user's
// signed-in connections.
type Message struct {
	Channels        []string
	Event           string
	Data            string
	ExcludeSocketID string
}

func (s *Server) validateEvent(event, data string) error {
	if event == "" {
		return fmt.Errorf("%w: event name is empty", ErrInvalid)
	}
	if len(event) > s.cfg.Limits.MaxEventNameLength {
		return fmt.Errorf("%w: event name longer than %d", ErrLimit, s.cfg.Limits.MaxEventNameLength)
	}
	if len(data) > s.cfg.Limits.MaxPayloadBytes {
		return fmt.Errorf("%w: data is %d bytes, over %d", ErrLimit, len(data), s.cfg.Limits.MaxPayloadBytes)
	}
	return nil
}

// Publish sends m to every subscriber of its channels and returns how many sockets
// it is queued for: the subscribers at the time of the call, less the excluded
// socket (one closed before its write, as a slow consumer or by its client, is still
// counted). The frame is encoded once per channel; cache channels remember it.
func (s *Server) Publish(ctx context.Context, m Message) (delivered int, err error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.draining.Load() {
		return 0, ErrClosed
	}
	if err := s.validateEvent(m.Event, m.Data); err != nil {
		return 0, err
	}
	if len(m.Channels) == 0 {
		return 0, fmt.Errorf("%w: no channels", ErrInvalid)
	}
	if len(m.Channels) > s.cfg.Limits.MaxChannelsPerTrigger {
		return 0, fmt.Errorf("%w: %d channels, over %d", ErrLimit, len(m.Channels), s.cfg.Limits.MaxChannelsPerTrigger)
	}
	chans := make([]protocol.Channel, len(m.Channels))
	for i, name := range m.Channels {
		ch, err := protocol.ParseChannel(name, s.cfg.Limits.MaxChannelNameLength)
		if err != nil {
			return 0, fmt.Errorf("%w: %s", ErrInvalid, err.Error())
		}
		chans[i] = ch
	}
	if s.opts.cluster != nil {
		var congested string
		delivered, congested, err = s.publishCluster(ctx, chans, m)
		if err != nil {
			return delivered, err
		}
		s.st.published.Add(1)
		s.publishedCluster(delivered, start)
		if congested != "" {
			// Published already; the caller waits for the subscribers
			// (see Congestion).
			s.holdCluster(ctx, congested)
		}
		return delivered, nil
	}
	expires := s.opts.now().Add(s.cfg.CacheTTL)
	var cong *congestion
	for _, ch := range chans {
		if ch.Kind == protocol.KindServerToUser {
			delivered += s.sendToUser(ch.UserID, m.Event, m.Data, m.ExcludeSocketID)
			continue
		}
		frame := eventFrame(m.Event, ch.Name, m.Data, "")
		if ch.Cache {
			s.hub.putCache(ch.Name, cachedEvent{event: m.Event, data: m.Data, expires: expires})
		}
		n, cg := s.hub.postChannel(ch.Name, frame, m.ExcludeSocketID)
		if cg != nil && cong == nil {
			cong = cg
		}
		s.st.messagesOut.Add(uint64(n))
		delivered += n
		if s.watchingMessages() {
			s.emit(lifecycle.Event{Type: lifecycle.Published, Time: s.opts.now(), Channel: ch.Name, Name: m.Event, Delivered: n})
		}
	}
	s.st.published.Add(1)
	if mt := s.opts.metrics; mt != nil {
		mt.Published(delivered, time.Since(start))
	}
	if cong != nil && s.hub.holding {
		// Queued already; the caller waits for the subscribers (see
		// Congestion).
		s.holdUntil(ctx, cong.done, nil)
	}
	return delivered, nil
}

// SendToUser sends event to every connection signed in as userID, on the channel
// #server-to-user-{userID}, whether or not it subscribed to it (as Pusher does), and
// returns how many it is queued for (counted as Publish counts).
func (s *Server) SendToUser(ctx context.Context, userID, event, data string) (delivered int, err error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.draining.Load() {
		return 0, ErrClosed
	}
	if userID == "" || len(userID) > s.cfg.Limits.MaxUserIDLength {
		return 0, fmt.Errorf("%w: user id must be 1 to %d characters", ErrInvalid, s.cfg.Limits.MaxUserIDLength)
	}
	if err := s.validateEvent(event, data); err != nil {
		return 0, err
	}
	if s.opts.cluster != nil {
		ch := protocol.Channel{Name: protocol.ServerToUserChannel(userID), Kind: protocol.KindServerToUser, UserID: userID}
		if delivered, _, err = s.publishCluster(ctx, []protocol.Channel{ch}, Message{Event: event, Data: data}); err != nil {
			return delivered, err
		}
		s.st.published.Add(1)
		s.publishedCluster(delivered, start)
		return delivered, nil
	}
	delivered = s.sendToUser(userID, event, data, "")
	s.st.published.Add(1)
	if mt := s.opts.metrics; mt != nil {
		mt.Published(delivered, time.Since(start))
	}
	return delivered, nil
}

func (s *Server) sendToUser(userID, event, data, exclude string) int {
	frame := eventFrame(event, protocol.ServerToUserChannel(userID), data, "")
	n := s.hub.postUser(userID, frame, exclude)
	s.st.messagesOut.Add(uint64(n))
	if s.watchingMessages() {
		s.emit(lifecycle.Event{Type: lifecycle.Published, Time: s.opts.now(), Channel: protocol.ServerToUserChannel(userID), UserID: userID, Name: event, Delivered: n})
	}
	return n
}
