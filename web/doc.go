// Package web holds the browser-facing pages of pushercm: the demo app
// (web/demo, on the realtime listener) and the operator console
// (web/console, on the ops listener). This package itself only vouches
// for the vendored pusher-js file (see its test).
package web
