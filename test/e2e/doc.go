// Package e2e holds end-to-end tests only (package e2e_test): the real
// pushercm binary, or the whole app started in process, on 127.0.0.1:0,
// exercised over gRPC, WebSocket and HTTP as users do.
package e2e
