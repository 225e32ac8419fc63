package app

import (
	"context"
	"fmt"
	"time"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/ratelimit"
)

// httpAPILimiter adapts a keyed bucket to httpapi.Limiter: requests per
// second per app, answered 429 with the exact wait as Retry-After.
type httpAPILimiter struct{ kb *ratelimit.KeyedBucket }

func (h httpAPILimiter) Allow(_ context.Context, r httpapi.LimitRequest) (bool, time.Duration) {
	d := h.kb.AllowAt(r.AppID, time.Now())
	return d.Allowed, d.RetryAfter
}

// edgeLimitOptions turns the edge's rate settings into edge options. The
// per-IP connection and per-user subscription limits are edge.Config fields.
func edgeLimitOptions(e config.Edge) ([]edge.Option, error) {
	var opts []edge.Option
	if n := e.HTTPRequestsPerSecond; n > 0 {
		// A burst of one second's worth: a batch job may send its requests
		// back to back, but not sustain more than n per second.
		kb, err := ratelimit.NewKeyedBucket(float64(n), n, nil)
		if err != nil {
			return nil, fmt.Errorf("edge.httpRequestsPerSecond: %w", err)
		}
		opts = append(opts, edge.WithHTTPLimiter(httpAPILimiter{kb}))
	}
	return opts, nil
}
