package interceptors

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
)

// FuzzBearer: the gRPC authorization metadata is either refused with ErrTokenMissing,
// or gives a non-empty, trimmed token that the HTTP endpoints' authz.ParseBearer reads
// the same way from the same value, so both listeners agree on every token they take.
//
//	go test -fuzz=FuzzBearer ./interceptors
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer abc", "", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer  x \t", "Bearer\tx", " Bearer x", "BEARER a b"} {
		f.Add(s, "")
	}
	f.Add("Bearer first", "Bearer second")
	f.Fuzz(func(t *testing.T, v, second string) {
		md := metadata.MD{}
		md.Append("authorization", v)
		if second != "" {
			md.Append("authorization", second)
		}
		tok, err := bearer(metadata.NewIncomingContext(context.Background(), md))
		if err != nil {
			if tok != "" || !errors.Is(err, authz.ErrTokenMissing) {
				t.Fatalf("%q: %q, %v", v, tok, err)
			}
			return
		}
		if tok == "" || tok != strings.TrimSpace(tok) || !strings.Contains(v, tok) {
			t.Fatalf("%q gave token %q", v, tok)
		}
		if scheme, _, _ := strings.Cut(v, " "); !strings.EqualFold(scheme, "Bearer") {
			t.Fatalf("%q accepted with scheme %q", v, scheme)
		}
		if httpTok, err := authz.ParseBearer(v); err != nil || httpTok != tok {
			t.Fatalf("%q: gRPC token %q, HTTP token %q (%v)", v, tok, httpTok, err)
		}
	})
}
