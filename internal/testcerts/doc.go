// Package testcerts makes certificate authorities and certificates for
// tests: a CA per test, server certificates for 127.0.0.1 and localhost,
// client certificates for mTLS, all ECDSA P-256 and written as PEM.
package testcerts
