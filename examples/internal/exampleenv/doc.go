// Package exampleenv dials pushercm for the example programs from the
// environment: PUSHERCM_ADDR (default localhost:50051) and PUSHERCM_TOKEN (a
// service token; `pushercm token --dev --sub svc --scopes events:publish`
// prints one). Loopback addresses use plaintext, anything else TLS, unless
// PUSHERCM_INSECURE=true.
package exampleenv
