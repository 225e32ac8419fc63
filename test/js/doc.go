// Package jsinterop holds the interop tests only (package jsinterop_test):
// the real pusher-js 8.6.0 and npm pusher 5.3.4 SDKs, pinned by
// package-lock.json, run by node against pushercm.
package jsinterop
