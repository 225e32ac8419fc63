package pushertest

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/authz"
)

// Buffer collects log lines written by many goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail is the last n lines of the buffer.
func (s *Buffer) Tail(n int) string {
	lines := strings.Split(s.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Mint signs a service token with secret; a zero TTL means an hour.
func Mint(t testing.TB, secret string, o authz.MintOptions) string {
	t.Helper()
	if o.TTL == 0 {
		o.TTL = time.Hour
	}
	tok, err := authz.Mint([]byte(secret), o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Condition is what Eventually polls: a func() bool, or a func() error that
// returns nil once the condition holds (its last error is shown on failure).
type Condition interface {
	func() bool | func() error
}

// Eventually polls cond until it holds, failing the test with what after Wait.
// It is the one way tests wait for a condition they cannot be told about: a
// fixed sleep is either too short on a loaded machine or too long on an idle
// one.
func Eventually[C Condition](t testing.TB, what string, cond C) {
	t.Helper()
	EventuallyWithin(t, Wait, what, cond)
}

// EventuallyWithin is Eventually bounded by d instead of Wait, for a test
// whose bound is what it asserts ("released within 10 s").
func EventuallyWithin[C Condition](t testing.TB, d time.Duration, what string, cond C) {
	t.Helper()
	var check func() error
	switch f := any(cond).(type) {
	case func() bool:
		check = func() error {
			if f() {
				return nil
			}
			return errNotYet
		}
	case func() error:
		check = f
	}
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if errors.Is(err, errNotYet) {
				t.Fatalf("timed out after %v waiting for %s", d, what)
			}
			t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")
