// Package health evaluates whether pushercm is fit to serve and publishes
// the verdict three ways: grpc.health.v1 (one status per service plus the
// server as a whole), /readyz (200 or 503 with the reasons) and /healthz
// (liveness only: it says the process answers, nothing more).
//
// Guarantees: an unhealthy verdict or a started shutdown makes every
// grpc.health.v1 service NOT_SERVING and /readyz 503; once shutdown starts,
// no later evaluation turns them back to SERVING, and every evaluation
// (GetHealthStatus) says unhealthy with the reason "shutting down".
package health
