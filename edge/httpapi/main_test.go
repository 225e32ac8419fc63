package httpapi_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The handler starts no goroutines; goleak guards that, and that the SDK tests' servers
// and clients are torn down.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
