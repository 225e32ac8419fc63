// Package server implements the pushercm.v1 gRPC services. Handlers only
// translate between protobuf messages and the domain packages (delivery,
// authz, edge, ratelimit, health) and return domain errors; the
// interceptors map those errors to statuses in one place.
package server
