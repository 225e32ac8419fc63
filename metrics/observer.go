package metrics

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LatencyBounds are the upper bounds, in seconds, of the delivery latency
// histogram buckets (the last bucket is unbounded). They span an in-process
// fan-out to one socket (tens of µs) up to a stalled publish.
var LatencyBounds = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

const numCodes = 17 // codes.OK .. codes.Unauthenticated

// Observer counts the hot-path events. It implements edge.Metrics
// (Published) and counts every RPC's outcome (Finished). The zero value
// is not usable; call NewObserver. Safe for concurrent use.
type Observer struct {
	published atomic.Uint64
	delivered atomic.Uint64
	latCount  atomic.Uint64
	latSumNs  atomic.Int64
	latency   [len0 + 1]atomic.Uint64

	calls [numCodes]atomic.Uint64

	reasonsMu sync.Mutex
	reasons   map[string]uint64

	hist      atomic.Pointer[histogram]
	writeHist atomic.Pointer[histogram]
	writes    atomic.Uint64
	frames    atomic.Uint64
}

// histogram is an exported latency histogram (Register sets them).
type histogram struct{ prometheus.Histogram }

const len0 = 17 // len(LatencyBounds); a constant so the bucket array has a fixed size

// NewObserver returns an Observer with all counters at zero.
func NewObserver() *Observer {
	if len(LatencyBounds) != len0 {
		panic("metrics: LatencyBounds and len0 disagree")
	}
	return &Observer{reasons: make(map[string]uint64)}
}

// Published implements edge.Metrics: one call per Publish/SendToUser with
// the connections the event is queued for and the time the call took (the
// fan-out and socket writes follow; see Written).
func (o *Observer) Published(delivered int, elapsed time.Duration) {
	o.published.Add(1)
	o.delivered.Add(uint64(max(delivered, 0)))
	o.latCount.Add(1)
	o.latSumNs.Add(int64(elapsed))
	sec := elapsed.Seconds()
	i := sort.SearchFloat64s(LatencyBounds, sec) // first bound >= sec
	o.latency[i].Add(1)
	if h := o.hist.Load(); h != nil {
		h.Observe(sec)
	}
}

// Delivered implements edge.DeliveryObserver: in a cluster, the sockets this
// node queued a received event for.
func (o *Observer) Delivered(n int) { o.delivered.Add(uint64(max(n, 0))) }

// Written implements edge.WriteObserver: one call per socket write, with how
// long the oldest frame it carried waited since its publish queued it, and
// how many frames the write coalesced. This is the publish-to-socket-write
// latency.
func (o *Observer) Written(wait time.Duration, frames int) {
	o.writes.Add(1)
	o.frames.Add(uint64(max(frames, 0)))
	if h := o.writeHist.Load(); h != nil {
		h.Observe(wait.Seconds())
	}
}

// RPC records one finished call. reason is the ErrorInfo reason of a
// failure ("" when none was attached).
func (o *Observer) RPC(code codes.Code, reason string) {
	if int(code) < numCodes {
		o.calls[code].Add(1)
	}
	if code == codes.OK {
		return
	}
	if reason == "" {
		reason = "UNSPECIFIED"
	}
	o.reasonsMu.Lock()
	o.reasons[reason]++
	o.reasonsMu.Unlock()
}

// Finished counts one finished call by the status the client saw, err (nil:
// OK), and its ErrorInfo reason (the product's: the interceptor chain's
// tracker calls it after error mapping, interceptors.Tracker).
func (o *Observer) Finished(err error) {
	if err == nil {
		o.RPC(codes.OK, "")
		return
	}
	st, _ := status.FromError(err)
	o.RPC(st.Code(), reasonOf(st))
}

func reasonOf(st *status.Status) string {
	for _, d := range st.Proto().GetDetails() {
		var info errdetails.ErrorInfo
		if d.MessageIs(&info) && d.UnmarshalTo(&info) == nil {
			return info.Reason
		}
	}
	return ""
}

// Snapshot is the Observer's cumulative counters at one instant.
type Snapshot struct {
	Time         time.Time
	Published    uint64
	Delivered    uint64
	LatencyCount uint64
	LatencySum   time.Duration
	// Latency counts publishes per LatencyBounds bucket (last: over the top bound).
	Latency [len0 + 1]uint64
	// Calls counts finished RPCs by gRPC code.
	Calls [numCodes]uint64
	// ErrorsByReason counts failed RPCs by ErrorInfo reason.
	ErrorsByReason map[string]uint64
}

// TotalCalls is the number of finished RPCs.
func (s Snapshot) TotalCalls() uint64 {
	var n uint64
	for _, c := range s.Calls {
		n += c
	}
	return n
}

// FailedCalls is the number of RPCs that did not end OK.
func (s Snapshot) FailedCalls() uint64 { return s.TotalCalls() - s.Calls[codes.OK] }

// Snapshot reads the counters.
func (o *Observer) Snapshot(now time.Time) Snapshot {
	s := Snapshot{
		Time:         now,
		Published:    o.published.Load(),
		Delivered:    o.delivered.Load(),
		LatencyCount: o.latCount.Load(),
		LatencySum:   time.Duration(o.latSumNs.Load()),
	}
	for i := range o.latency {
		s.Latency[i] = o.latency[i].Load()
	}
	for i := range o.calls {
		s.Calls[i] = o.calls[i].Load()
	}
	o.reasonsMu.Lock()
	s.ErrorsByReason = make(map[string]uint64, len(o.reasons))
	for k, v := range o.reasons {
		s.ErrorsByReason[k] = v
	}
	o.reasonsMu.Unlock()
	return s
}
