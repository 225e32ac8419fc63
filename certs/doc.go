// Package certs serves a TLS certificate and key from files and picks up
// replacements without a restart: each handshake asks for the current pair,
// and at most once per check interval the files' size and modification time
// are compared with those of the loaded pair; when they changed, the pair is
// read again. A replacement that does not parse (a half-written file, a key
// that does not match) keeps the previous pair in service and is retried at
// the next check, so a botched rotation never takes a listener down.
//
// It works with Kubernetes secret volumes (files swapped by a symlink) and
// cert-manager or certbot renewals alike; nothing watches directories.
package certs
