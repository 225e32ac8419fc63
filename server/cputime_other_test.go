//go:build !unix

package server_test

import (
	"testing"
	"time"
)

// bcCPUTime is unknown here: -1 turns the cpu-ns/op metric off.
func bcCPUTime(*testing.B) time.Duration { return -1 }
