//go:build race

package edge

// raceEnabled adds a happens-before edge between nbio's accept goroutine and its poller
// (they synchronise through epoll, which the race detector cannot see).
const raceEnabled = true
