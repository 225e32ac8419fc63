// Package client holds the tests of the Go client (package client_test)
// against a real pushercm started in process. They live in the main module
// because the client is a module of its own that must not depend on the
// server.
package client
