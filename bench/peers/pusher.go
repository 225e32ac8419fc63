package peers

import (
	"context"
	"net"

	edgebench "github.com/milequest/pushercm/bench/edge"
)

// pusherSubscribe is the Pusher protocol subscriber of pushercm and soketi.
func pusherSubscribe(ctx context.Context, t edgebench.Target, channel string) (net.Conn, error) {
	c, err := edgebench.Dial(ctx, t)
	if err != nil {
		return nil, err
	}
	if err := c.Subscribe(channel); err != nil {
		_ = c.Close()
		return nil, err
	}
	conn, err := c.Conn()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return conn, nil
}

// pusherPublisher is the signed Pusher HTTP API (/events, /batch_events).
type pusherPublisher struct{ p *edgebench.Publisher }

func (p pusherPublisher) Publish(ctx context.Context, evs []edgebench.Event) error {
	return p.p.Batch(ctx, evs)
}
