package protocol

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
)

var socketSeq atomic.Uint64

// NewSocketID returns a socket id of the form \d+\.\d+ that is unique within the process:
// the part after the dot is a process-wide counter, the part before it random so ids are
// not trivially guessable across restarts.
func NewSocketID() string {
	n := socketSeq.Add(1)
	b := make([]byte, 0, 24)
	b = strconv.AppendUint(b, rand.Uint64N(1_000_000_000)+1, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, n, 10)
	return string(b)
}

// ValidSocketID reports whether s matches \A\d+\.\d+\z, as pusher-http-go requires.
func ValidSocketID(s string) bool {
	dot := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && dot < 0:
			dot = i
		default:
			return false
		}
	}
	return dot > 0 && dot < len(s)-1
}
