// Package deploy holds tests only (package deploy_test) of what deployments
// rely on: the static binary `make build` produces (no dynamic section; it
// serves from an empty root file system and `pushercm healthcheck` probes
// it), the Dockerfile's promises, TLS on every listener, the Helm chart's
// configuration as pushercm loads it, the alert rules under promtool, and
// that every metric the Grafana dashboard and the Prometheus rules name is
// exported by a running pushercm.
package deploy
