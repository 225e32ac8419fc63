package edge

import (
	"sync/atomic"
	"time"
)

type counters struct {
	connectionsTotal    atomic.Uint64
	refused             map[string]*atomic.Uint64 // fixed keys, built in New
	messagesIn          atomic.Uint64
	messagesOut         atomic.Uint64
	published           atomic.Uint64
	clientEvents        atomic.Uint64
	clientEventsLimited atomic.Uint64
	slowConsumers       atomic.Uint64
	slowDropped         atomic.Uint64
	held                atomic.Uint64
	heldNanos           atomic.Uint64
	holdTimeouts        atomic.Uint64
	staleClosed         atomic.Uint64
	httpRefused         atomic.Uint64
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// ConnectionsActive are open sockets; ConnectionsTotal ever accepted.
	ConnectionsActive int64
	// MaxConnections is the configured cap (negative = unlimited), for utilisation.
	MaxConnections   int
	ConnectionsTotal uint64
	// ConnectionsRefused counts refused sockets by reason (RefusedPoolExhausted
	// "CONNECTION_POOL_EXHAUSTED", RefusedRateLimited, RefusedUnknownApp, ...).
	ConnectionsRefused map[string]uint64
	Subscriptions      int64
	Channels           int
	PresenceMembers    int
	SignedInUsers      int
	// MessagesIn are frames received; MessagesOut frames written to sockets.
	MessagesIn, MessagesOut uint64
	// Published counts Publish and SendToUser calls.
	Published uint64
	// ClientEvents relayed; ClientEventsLimited rejected by the rate limit.
	ClientEvents, ClientEventsLimited uint64
	// SlowConsumersClosed were closed with 4100 for a full outbound queue.
	SlowConsumersClosed uint64
	// SlowConsumerDropped counts the events not queued for a socket because
	// they would have overflowed its outbound queue: it was closed with 4100
	// instead (one or more per SlowConsumersClosed).
	SlowConsumerDropped uint64
	// PublishesHeld counts publishes held because a channel was congested
	// (see Config.PublishHoldMax), PublishHeldTime their time held in all,
	// and PublishHoldTimeouts those released by PublishHoldMax rather than
	// by the congestion's end.
	PublishesHeld, PublishHoldTimeouts uint64
	PublishHeldTime                    time.Duration
	// StaleClosed were closed with 4201 for not answering a ping.
	StaleClosed uint64
	// HTTPRequestsRefused were answered 413 or 431 by the listener's size
	// limits before a handler saw them.
	HTTPRequestsRefused uint64
	// CacheEntries held by cache channels (expired ones linger until the next sweep).
	CacheEntries int
	// CacheEvicted counts entries dropped before expiry for MaxCacheChannels.
	CacheEvicted uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		ConnectionsTotal:    s.st.connectionsTotal.Load(),
		MaxConnections:      s.cfg.Limits.MaxConnections,
		ConnectionsRefused:  make(map[string]uint64, len(s.st.refused)),
		Subscriptions:       s.hub.subscriptions.Load(),
		MessagesIn:          s.st.messagesIn.Load(),
		MessagesOut:         s.st.messagesOut.Load(),
		Published:           s.st.published.Load(),
		ClientEvents:        s.st.clientEvents.Load(),
		ClientEventsLimited: s.st.clientEventsLimited.Load(),
		SlowConsumersClosed: s.st.slowConsumers.Load(),
		SlowConsumerDropped: s.st.slowDropped.Load(),
		PublishesHeld:       s.st.held.Load(),
		PublishHoldTimeouts: s.st.holdTimeouts.Load(),
		PublishHeldTime:     time.Duration(s.st.heldNanos.Load()),
		StaleClosed:         s.st.staleClosed.Load(),
		HTTPRequestsRefused: s.st.httpRefused.Load(),
	}
	for k, v := range s.st.refused {
		st.ConnectionsRefused[k] = v.Load()
	}
	s.hub.counts(&st)
	return st
}
