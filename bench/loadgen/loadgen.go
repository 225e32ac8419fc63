package loadgen

import (
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/status"

	edgebench "github.com/milequest/pushercm/bench/edge"
)

// Result is one measured window.
type Result struct {
	Calls, Errors int64  // successful and failed calls completed in the window
	FirstError    string // "CODE: message" of the first failure, if any
	AllOK         int64  // GHZ.Run: successful calls including the warmup's
	Elapsed       time.Duration
	RPS           float64 // successful calls per second
	P50, P99, Max time.Duration
	// Late counts, for RunRate, measured calls that started more than a
	// millisecond after their turn because their caller was still busy (or
	// not scheduled): then the offered rate was not held.
	Late int64
	// CPU holds, per probe given to Run, the CPU time consumed over the window.
	CPU []time.Duration
}

// Run runs c closed-loop callers of call: warmup unmeasured, then d
// measured. Each probe (a CPU clock such as SelfCPU or ProcessCPU) is read
// at both edges of the measured window.
func Run(c int, warmup, d time.Duration, call func(worker int) error, probes ...func() time.Duration) Result {
	return run(0, c, warmup, d, call, probes)
}

// RunRate offers rate calls per second over c callers (an open loop): each
// caller starts a call every c/rate, its turns staggered from the others', and
// waits when it is early. Latency is counted from the call's actual start, so
// that it shows the server's time per call rather than the load tool's timer;
// a call that started more than a millisecond after its turn (its caller was
// still waiting for the previous one) is counted in Result.Late. RPS is then
// the rate achieved, below rate when the server could not keep up.
func RunRate(rate float64, c int, warmup, d time.Duration, call func(worker int) error, probes ...func() time.Duration) Result {
	return run(rate, c, warmup, d, call, probes)
}

// run is Run with rate 0, RunRate otherwise.
func run(rate float64, c int, warmup, d time.Duration, call func(worker int) error, probes []func() time.Duration) Result {
	var period time.Duration
	if rate > 0 {
		period = time.Duration(float64(c) / rate * float64(time.Second))
	}
	begin := time.Now()
	var (
		late            atomic.Int64
		measuring, stop atomic.Bool
		wg              sync.WaitGroup
		mu              sync.Mutex
		all             []time.Duration
		errs            atomic.Int64
		firstErr        atomic.Value
	)
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<15)
			turn := begin.Add(period * time.Duration(w) / time.Duration(max(c, 1)))
			for !stop.Load() {
				if period > 0 {
					if wait := time.Until(turn); wait > 0 {
						time.Sleep(wait)
					}
				}
				start := time.Now()
				err := call(w)
				el := time.Since(start)
				behind := period > 0 && start.Sub(turn) > time.Millisecond
				turn = turn.Add(period)
				if !measuring.Load() {
					continue
				}
				if behind {
					late.Add(1)
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, status.Code(err).String()+": "+status.Convert(err).Message())
					continue
				}
				local = append(local, el)
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}(w)
	}
	time.Sleep(warmup)
	before := read(probes)
	start := time.Now()
	measuring.Store(true)
	time.Sleep(d)
	measuring.Store(false)
	elapsed := time.Since(start)
	after := read(probes)
	stop.Store(true)
	wg.Wait()

	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := Result{Calls: int64(len(all)), Errors: errs.Load(), Elapsed: elapsed, RPS: float64(len(all)) / elapsed.Seconds(), Late: late.Load()}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	if n := len(all); n > 0 {
		r.P50, r.P99, r.Max = all[n/2], all[min(n-1, n*99/100)], all[n-1]
	}
	for i := range probes {
		r.CPU = append(r.CPU, after[i]-before[i])
	}
	return r
}

func read(probes []func() time.Duration) []time.Duration {
	out := make([]time.Duration, len(probes))
	for i, p := range probes {
		out[i] = p()
	}
	return out
}

// SelfCPU is this process's user+system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcessCPU returns a probe of process pid's CPU time (0 for pid <= 0 or
// when /proc cannot be read), e.g. a server spawned by the tool.
func ProcessCPU(pid int) func() time.Duration {
	return func() time.Duration {
		if pid <= 0 {
			return 0
		}
		t, err := edgebench.CPUTime(pid)
		if err != nil {
			return 0
		}
		return t
	}
}

// Median is the median of xs (the mean of the middle two for an even count),
// 0 for none; xs is left as it was.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	return (s[(n-1)/2] + s[n/2]) / 2
}
