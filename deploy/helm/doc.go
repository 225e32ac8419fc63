// Package helm tests the pushercm Helm chart in ./pushercm: `helm lint` and
// `helm template` with the pinned helm (a tool of this module), for the
// defaults and for cluster mode, TLS and the ServiceMonitor; every rendered
// manifest must decode strictly — no unknown field, no wrong type — into the
// Kubernetes API types of the pinned k8s.io/api (and prometheus-operator's
// for the ServiceMonitor), which serve as the schemas.
package helm
