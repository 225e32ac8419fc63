package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/errcode"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/ratelimit"
)

// Response headers set on calls a limit applied to.
const (
	// HeaderRateLimitLimit is the capacity of the binding limit (burst or per-window count).
	HeaderRateLimitLimit = "x-ratelimit-limit"
	// HeaderRateLimitRemaining is how many more events would be admitted now.
	HeaderRateLimitRemaining = "x-ratelimit-remaining"
	// HeaderRateLimitReset is when the binding limit replenishes, as Unix epoch
	// seconds rounded up (the GitHub convention); the exact instant is in the
	// resetTime of a refusal's ErrorInfo.
	HeaderRateLimitReset = "x-ratelimit-reset"
)

// ReasonRateLimited is the ErrorInfo reason of a rate-limit refusal.
const ReasonRateLimited = string(errcode.RateLimited)

// anonymousPrincipal keys callers without a principal, so that they share
// one bucket instead of escaping the limit.
const anonymousPrincipal = "anonymous"

// RateLimitOption configures the rate-limit interceptors.
type RateLimitOption func(*rateLimiter)

// withRateLimitPrincipal tells the interceptor who the caller is (tests).
// Default: the subject of the principal the auth interceptor put in the
// context (authz.FromContext). When it returns "", calls are limited as one
// "anonymous" principal.
func withRateLimitPrincipal(f func(ctx context.Context) string) RateLimitOption {
	return func(r *rateLimiter) { r.principal = f }
}

// WithRateLimitKeys extracts the per-event keys of a request (for
// BroadcastService, each event's user_id): every occurrence counts as one
// event against that key's "user" limiter; "" is ignored. req is nil for
// streams. Without it only the principal and method limiters apply.
func WithRateLimitKeys(f func(ctx context.Context, fullMethod string, req any) []string) RateLimitOption {
	return func(r *rateLimiter) { r.keys = f }
}

// WithRateLimitLogger sets the logger for refusals (DEBUG, with limiter and
// key) and store failures (WARN). Default slog.Default().
func WithRateLimitLogger(l *slog.Logger) RateLimitOption {
	return func(r *rateLimiter) { r.log = l }
}

// BroadcastUserIDs is a keys function for WithRateLimitKeys: the user_id of
// every event of SendEvent and SendBatch, and the user of SendToUser, one
// entry per event. Other requests have no per-event keys.
func BroadcastUserIDs(_ context.Context, _ string, req any) []string {
	switch r := req.(type) {
	case *pushercmv1.SendEventRequest:
		if id := r.GetEvent().GetUserId(); id != "" {
			return []string{id}
		}
	case *pushercmv1.SendBatchRequest:
		ids := make([]string, 0, len(r.GetEvents()))
		for _, e := range r.GetEvents() {
			ids = append(ids, e.GetUserId())
		}
		return ids
	case *pushercmv1.SendToUserRequest:
		if id := r.GetUserId(); id != "" {
			return []string{id}
		}
	}
	return nil
}

// MethodCounts counts rate-limit outcomes per gRPC method: the label set is
// bounded by the service's methods. Share one between the unary and stream
// interceptors with withRateLimitMethodCounts and read it with Snapshot.
type MethodCounts struct {
	m sync.Map // full method -> *methodCount
}

type methodCount struct{ allowed, limited atomic.Uint64 }

// MethodCount is one method's outcomes since start.
type MethodCount struct {
	Method           string
	Allowed, Limited uint64
}

func (mc *MethodCounts) add(method string, limited bool) {
	v, ok := mc.m.Load(method)
	if !ok {
		v, _ = mc.m.LoadOrStore(method, new(methodCount))
	}
	c := v.(*methodCount)
	if limited {
		c.limited.Add(1)
	} else {
		c.allowed.Add(1)
	}
}

// Snapshot returns the counts of every method seen, in no particular order.
func (mc *MethodCounts) Snapshot() []MethodCount {
	var out []MethodCount
	mc.m.Range(func(k, v any) bool {
		c := v.(*methodCount)
		out = append(out, MethodCount{Method: k.(string), Allowed: c.allowed.Load(), Limited: c.limited.Load()})
		return true
	})
	return out
}

// withRateLimitMethodCounts counts every checked call's outcome per method
// (a refusal counts as limited; in dry-run, calls pass and count as allowed
// here, while the limiters' own counters record the would-be refusals).
func withRateLimitMethodCounts(mc *MethodCounts) RateLimitOption {
	return func(r *rateLimiter) { r.counts = mc }
}

type rateLimiter struct {
	counts    *MethodCounts
	set       *ratelimit.Set
	principal func(context.Context) string
	keys      func(ctx context.Context, fullMethod string, req any) []string
	log       *slog.Logger
}

func newRateLimiter(set *ratelimit.Set, opts []RateLimitOption) *rateLimiter {
	r := &rateLimiter{set: set, log: slog.Default(), principal: subjectOf}
	for _, o := range opts {
		o(r)
	}
	return r
}

// UnaryRateLimit limits unary calls. Install it after authentication. Per
// call it checks, in order, each distinct per-event key against the "user"
// limiter (n = that key's events), the principal against "principal", and the
// method against "method" (only methods with an override, by default). The
// most specific limits come first so that the scarcest refuses before the
// broader ones consume; a call refused by a later limiter has still consumed
// from the earlier ones.
//
// A refusal is RESOURCE_EXHAUSTED with ErrorInfo{reason RATE_LIMITED, domain
// pushercm, metadata retryAfterMs, resetTime, limiter} and RetryInfo (built
// by Map from a *RateLimitError).
// A batch that could never fit (more events for one key than its burst) is
// INVALID_ARGUMENT, since retrying cannot help. Admitted calls get the
// x-ratelimit-* headers of their tightest limit once it has less than
// Config.HeadersBelowPercent of it left, unless Config.Headers turns them
// off (refusals always carry them). In dry-run (Config.DryRun)
// nothing is refused: refusals are counted and logged at DEBUG. If the store
// fails, the call is admitted and the failure logged: an unavailable limiter
// must not take publishing down.
func UnaryRateLimit(set *ratelimit.Set, opts ...RateLimitOption) grpc.UnaryServerInterceptor {
	r := newRateLimiter(set, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if r.exempt(info.FullMethod) {
			return handler(ctx, req)
		}
		d, send, err := r.check(ctx, info.FullMethod, req)
		if r.counts != nil {
			r.counts.add(info.FullMethod, err != nil)
		}
		if send {
			setUnaryHeaders(ctx, d)
		}
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamRateLimit limits stream opens the way UnaryRateLimit limits calls
// (the keys function gets a nil request); messages within a stream are not
// limited.
func StreamRateLimit(set *ratelimit.Set, opts ...RateLimitOption) grpc.StreamServerInterceptor {
	r := newRateLimiter(set, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if r.exempt(info.FullMethod) {
			return handler(srv, ss)
		}
		d, send, err := r.check(ss.Context(), info.FullMethod, nil)
		if r.counts != nil {
			r.counts.add(info.FullMethod, err != nil)
		}
		if send {
			_ = ss.SetHeader(decisionHeaders(d))
		}
		if err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

func subjectOf(ctx context.Context) string {
	if p := authz.FromContext(ctx); p != nil {
		return p.Subject
	}
	return ""
}

func (r *rateLimiter) exempt(fullMethod string) bool {
	return Public(fullMethod)
}

// check runs every applicable limiter at one instant and returns the
// decision to send as headers (when send is true) and the refusal, if any.
func (r *rateLimiter) check(ctx context.Context, fullMethod string, req any) (d ratelimit.Decision, send bool, err error) {
	c := checker{r: r, ctx: ctx, method: fullMethod, now: r.set.Clock().Now()}
	if r.keys != nil {
		keys := r.keys(ctx, fullMethod, req)
		for i, k := range keys {
			if k == "" || seenBefore(keys[:i], k) {
				continue
			}
			if err := c.take(ratelimit.LimiterUser, k, countOf(keys[i:], k)); err != nil {
				d, send := refusedDecision(err)
				return d, send, err
			}
		}
	}
	principal := r.principal(ctx)
	if principal == "" {
		principal = anonymousPrincipal
	}
	if err := c.take(ratelimit.LimiterPrincipal, principal, 1); err != nil {
		d, send := refusedDecision(err)
		return d, send, err
	}
	if err := c.take(ratelimit.LimiterMethod, fullMethod, 1); err != nil {
		d, send := refusedDecision(err)
		return d, send, err
	}
	if !c.have || !r.set.HeadersFor(c.tightest) {
		return ratelimit.Decision{}, false, nil
	}
	return c.tightest, true, nil
}

// checker is one call's pass over the limiters.
type checker struct {
	r        *rateLimiter
	ctx      context.Context
	method   string
	now      time.Time
	tightest ratelimit.Decision // the admitted decision with the least remaining
	have     bool
}

// take applies one limiter; a non-nil error refuses the call.
func (c *checker) take(name, key string, n int) error {
	r := c.r
	l := r.set.Limiter(name)
	if l == nil {
		return nil
	}
	d, err := l.AllowNAt(c.ctx, key, n, c.now)
	switch {
	case errors.Is(err, ratelimit.ErrExceedsCapacity):
		r.log.DebugContext(c.ctx, "rate limit: request can never fit", "limiter", name, "key", key, "events", n,
			"limit", d.Limit, "method", c.method, "dryRun", r.set.DryRun())
		if r.set.DryRun() {
			return nil
		}
		return capacityError(name, key, n, d)
	case err != nil:
		r.log.WarnContext(c.ctx, "rate limit store failed; admitting", "limiter", name, "method", c.method, "error", err)
		return nil
	case !d.Allowed:
		r.log.DebugContext(c.ctx, "rate limited", "limiter", name, "key", key, "events", n,
			"retryAfter", d.RetryAfter, "method", c.method, "dryRun", r.set.DryRun())
		if r.set.DryRun() {
			return nil
		}
		return rateLimitedError(name, key, d)
	}
	if d.Limit > 0 && (!c.have || d.Remaining < c.tightest.Remaining) {
		c.tightest, c.have = d, true
	}
	return nil
}

// Batches hold at most a few hundred events: quadratic scans beat a map.
func seenBefore(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

func countOf(keys []string, k string) int {
	n := 0
	for _, x := range keys {
		if x == k {
			n++
		}
	}
	return n
}

// headerValues formats the three header values; they share one string.
func headerValues(d ratelimit.Decision) (limit, remaining, reset string) {
	var buf [3 * 20]byte // three int64s in decimal
	b := strconv.AppendInt(buf[:0], int64(d.Limit), 10)
	limitEnd := len(b)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	remainingEnd := len(b)
	b = strconv.AppendInt(b, ceilUnix(d.ResetTime), 10)
	s := string(b)
	return s[:limitEnd], s[limitEnd:remainingEnd], s[remainingEnd:]
}

// decisionHeaders returns the headers of d in a map of their own.
func decisionHeaders(d ratelimit.Decision) metadata.MD {
	// Keys are already lower case, so the MD is built directly; the three
	// one-value slices share one array.
	limit, remaining, reset := headerValues(d)
	vals := []string{limit, remaining, reset}
	return metadata.MD{
		HeaderRateLimitLimit:     vals[0:1:1],
		HeaderRateLimitRemaining: vals[1:2:2],
		HeaderRateLimitReset:     vals[2:3:3],
	}
}

// headerBlock is a reusable x-ratelimit-* header map whose three values
// point into vals, so that filling it costs three stores and no map work.
type headerBlock struct {
	md   metadata.MD
	vals [3]string
}

var headerBlocks = sync.Pool{New: func() any {
	h := &headerBlock{}
	h.md = metadata.MD{
		HeaderRateLimitLimit:     h.vals[0:1:1],
		HeaderRateLimitRemaining: h.vals[1:2:2],
		HeaderRateLimitReset:     h.vals[2:3:3],
	}
	return h
}}

// setUnaryHeaders sets d's headers on a unary call. Every admitted call
// sends them, so the map comes from a pool: grpc-go's server transport
// merges what SetHeader gets into the stream's own map (metadata.Join copies
// the keys and the value slices), so the block is free again as soon as
// SetHeader returns. TestRateLimitHeadersConcurrentCalls checks that over a
// real server. A failure to set headers only loses advice; the call goes on.
func setUnaryHeaders(ctx context.Context, d ratelimit.Decision) {
	h := headerBlocks.Get().(*headerBlock)
	h.vals[0], h.vals[1], h.vals[2] = headerValues(d)
	_ = grpc.SetHeader(ctx, h.md)
	h.vals = [3]string{}
	headerBlocks.Put(h)
}

// refusedDecision carries the refusal's decision into headers too, for
// clients that read headers rather than status details.
func refusedDecision(err error) (ratelimit.Decision, bool) {
	var rl *limitedError
	if errors.As(err, &rl) {
		return rl.d, true
	}
	return ratelimit.Decision{}, false
}

func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// limitedError is a refusal that still knows its decision (for the
// headers); GRPCStatus makes it the status gRPC sends. The status comes from
// Map, the one place errors become statuses, so the rate-limit interceptor
// gives the same answer with or without an ErrorMapper in front of it.
type limitedError struct {
	st *status.Status
	d  ratelimit.Decision
}

func (e *limitedError) Error() string              { return e.st.Err().Error() }
func (e *limitedError) GRPCStatus() *status.Status { return e.st }

func rateLimitedError(limiter, key string, d ratelimit.Decision) error {
	err := &RateLimitError{Limiter: limiter, Key: key, RetryAfter: d.RetryAfter, ResetTime: d.ResetTime}
	return &limitedError{st: Map(err).Status, d: d}
}

// capacityError refuses a request that can never be admitted: retrying would
// not help, so it is INVALID_ARGUMENT, not RESOURCE_EXHAUSTED (which client
// retry policies retry).
func capacityError(limiter, key string, n int, d ratelimit.Decision) error {
	err := fmt.Errorf("%w: %d events for %s %q, but at most %d can be accepted at once",
		ErrInvalidArgument, n, limiter, key, d.Limit)
	return Map(err).Status.Err()
}
