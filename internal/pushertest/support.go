package pushertest

import (
	"bytes"
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
