package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Status is the overall verdict.
type Status int

// Verdicts, from best to worst.
const (
	Healthy Status = iota + 1
	Degraded
	Unhealthy
)

func (s Status) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Degraded:
		return "degraded"
	case Unhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// Report is one evaluation.
type Report struct {
	Status  Status
	Reasons []string
	// Figures behind the verdict, when the evaluator computes them.
	Figures *Figures
	// CheckedAt is when the evaluation ran (zero if the evaluator does not say).
	CheckedAt time.Time
}

// ReasonShuttingDown is the reason of the unhealthy verdict every
// evaluation gives once Shutdown was called.
const ReasonShuttingDown = "shutting down"

// Evaluator computes the current verdict. It is called on every readiness
// probe and by Refresh; it must be cheap.
type Evaluator func(ctx context.Context) Report

// Server owns the process's health: grpc.health.v1 statuses per service,
// /healthz (liveness) and /readyz (readiness). grpc.health.v1 and /readyz
// follow the evaluator: NOT_SERVING and 503 when it says unhealthy or the
// process is shutting down; degraded still serves.
type Server struct {
	grpc     *health.Server
	services []string
	eval     Evaluator

	mu       sync.Mutex
	last     Report
	shutdown atomic.Bool
	done     chan struct{}
}

// New returns a health server for the named gRPC services ("" is the whole
// server). eval may be nil (always healthy).
func New(services []string, eval Evaluator) *Server {
	if eval == nil {
		eval = func(context.Context) Report { return Report{Status: Healthy} }
	}
	s := &Server{grpc: health.NewServer(), services: append([]string{""}, services...), eval: eval, done: make(chan struct{})}
	s.Refresh(context.Background())
	return s
}

// GRPC is the grpc.health.v1 implementation to register.
func (s *Server) GRPC() healthpb.HealthServer { return s.grpc }

// SetEvaluator replaces the evaluator (wiring order: the evaluator may need
// things built after the health server).
func (s *Server) SetEvaluator(eval Evaluator) {
	s.mu.Lock()
	s.eval = eval
	s.mu.Unlock()
	s.Refresh(context.Background())
}

// Refresh evaluates and pushes the verdict to grpc.health.v1 watchers.
func (s *Server) Refresh(ctx context.Context) Report {
	s.mu.Lock()
	eval := s.eval
	s.mu.Unlock()
	r := eval(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		// The figures stay; the verdict is what load balancers act on.
		r.Status = Unhealthy
		r.Reasons = append(r.Reasons, ReasonShuttingDown)
		s.last = r
		return r
	}
	s.last = r
	st := healthpb.HealthCheckResponse_SERVING
	if r.Status == Unhealthy {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, svc := range s.services {
		s.grpc.SetServingStatus(svc, st)
	}
	return r
}

// Last is the most recent verdict.
func (s *Server) Last() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Shutdown marks every service NOT_SERVING for good, fails readiness and
// makes every later evaluation unhealthy (ReasonShuttingDown), so load
// balancers drain before the listeners stop.
func (s *Server) Shutdown() {
	if s.shutdown.Swap(true) {
		return
	}
	s.grpc.Shutdown()
	close(s.done)
}

// Done is closed when Shutdown is called, so that long-lived streams can end
// before the gRPC server's graceful stop waits for them.
func (s *Server) Done() <-chan struct{} { return s.done }

// Liveness answers /healthz: 200 while the process can serve HTTP at all.
func (s *Server) Liveness() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "alive"})
	})
}

// Readiness answers /readyz: 200 when healthy or degraded, 503 when
// unhealthy or shutting down, with the verdict and reasons as JSON.
func (s *Server) Readiness() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.shutdown.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "shutting_down"})
			return
		}
		rep := s.Refresh(r.Context())
		code := http.StatusOK
		if rep.Status == Unhealthy {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"status": rep.Status.String(), "reasons": rep.Reasons})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
