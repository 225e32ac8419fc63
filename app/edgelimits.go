package app

import (
	"fmt"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/ratelimit"
)

// perIPConnections adapts a keyed bucket to edge.ConnectionLimiter: new
// WebSocket connections per remote address per second.
type perIPConnections struct{ kb *ratelimit.KeyedBucket }

func (p perIPConnections) AllowConnection(remoteIP string) bool { return p.kb.Allow(remoteIP) }

// edgeLimitOptions turns the edge's rate settings into edge options.
func edgeLimitOptions(e config.Edge) ([]edge.Option, error) {
	var opts []edge.Option
	if n := e.ConnectionsPerIPPerSecond; n > 0 {
		// A burst of one second's worth lets a page with a few tabs connect
		// at once while a reconnect storm from one address is held back.
		kb, err := ratelimit.NewKeyedBucket(float64(n), n, nil)
		if err != nil {
			return nil, fmt.Errorf("edge.connectionsPerIpPerSecond: %w", err)
		}
		opts = append(opts, edge.WithConnectionLimiter(perIPConnections{kb}))
	}
	return opts, nil
}
