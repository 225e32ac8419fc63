package ratelimit

import (
	"io"
	"strings"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// decideV is decide returning the decision, for tests.
func decideV(e *entry, r *Rule, n, now int64, consume bool) Decision {
	var d Decision
	decide(e, r, n, now, consume, &d)
	return d
}
