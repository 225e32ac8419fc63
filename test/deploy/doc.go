// Package deploy_test checks what deployments rely on: the static binary
// `make build` produces (no dynamic section; it serves from an empty root
// file system and `pushercm healthcheck` probes it), the Dockerfile's
// promises, TLS on every listener, and that every metric the Grafana
// dashboard and the Prometheus rules name is exported by a running pushercm.
package deploy_test
