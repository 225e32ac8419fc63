package client

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// RetryPolicy says when and how often a failed idempotent send is retried.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt. Default 4; 1 disables retries.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry of UNAVAILABLE.
	// Default 100ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the UNAVAILABLE backoff. Default 5s.
	MaxBackoff time.Duration
	// Multiplier grows the backoff per retry. Default 2.
	Multiplier float64
	// MaxRetryDelay is the longest server-requested delay (RetryInfo) the
	// client waits for; a longer one is returned to the caller as is.
	// Default 30s.
	MaxRetryDelay time.Duration
}

// DefaultRetryPolicy is used when Dial gets no WithRetry.
func DefaultRetryPolicy() RetryPolicy { return RetryPolicy{}.withDefaults() }

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 4
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = 100 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Second
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	if p.MaxRetryDelay <= 0 {
		p.MaxRetryDelay = 30 * time.Second
	}
	return p
}

// backoff is the jittered wait before retry number n (1-based) of
// UNAVAILABLE: drawn from [d/2, d] so that many clients do not retry in step.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := float64(p.InitialBackoff)
	for i := 1; i < n; i++ {
		d *= p.Multiplier
		if d >= float64(p.MaxBackoff) {
			d = float64(p.MaxBackoff)
			break
		}
	}
	return time.Duration(d/2 + rand.Float64()*d/2)
}

// delay says whether an error with code and RetryInfo delay (0 when
// absent) may be retried, and after how long, as retry number n.
func (p RetryPolicy) delay(n int, code codes.Code, retryInfo time.Duration) (time.Duration, bool) {
	switch code {
	case codes.ResourceExhausted:
		// Without RetryInfo this is not a rate limit but a hard limit
		// (connection pool, lagging watcher): waiting would not help.
		if retryInfo <= 0 || retryInfo > p.MaxRetryDelay {
			return 0, false
		}
		return retryInfo, true
	case codes.Unavailable:
		d := p.backoff(n)
		if retryInfo > d && retryInfo <= p.MaxRetryDelay {
			d = retryInfo
		}
		return d, true
	}
	return 0, false
}

// RetryDelay is the server-requested delay of err (google.rpc.RetryInfo), or 0.
func RetryDelay(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// sleep waits d, unless ctx would end first: then it returns false at once
// (an attempt that cannot finish in time is not worth starting).
func sleep(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// idempotent reports whether req may be sent twice without delivering twice:
// every event it carries has an id, or it only asks for a signature.
func idempotent(req any) bool {
	switch r := req.(type) {
	case *pushercmv1.AuthorizeChannelRequest, *pushercmv1.AuthenticateUserRequest:
		return true
	case *pushercmv1.SendEventRequest:
		return r.GetEvent().GetId() != ""
	case *pushercmv1.SendToUserRequest:
		return r.GetId() != ""
	case *pushercmv1.SendBatchRequest:
		if len(r.GetEvents()) == 0 {
			return false
		}
		for _, e := range r.GetEvents() {
			if e.GetId() == "" {
				return false
			}
		}
		return true
	}
	return false
}

// retryInterceptor retries idempotent calls per policy.
func retryInterceptor(p RetryPolicy) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !idempotent(req) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		for n := 1; ; n++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil || n >= p.MaxAttempts {
				return err
			}
			d, ok := p.delay(n, status.Code(err), RetryDelay(err))
			if !ok || !sleep(ctx, d) {
				return err
			}
		}
	}
}
