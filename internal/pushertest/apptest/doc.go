// Package apptest is test support only: it starts the real pushercm app in the
// test process (config.Default with dev settings, every listener on
// 127.0.0.1:0), captures its logs and shows their tail when the test fails,
// and shuts it down at cleanup. It is apart from pushertest because it imports
// the whole app, which delivery's own tests cannot.
package apptest
