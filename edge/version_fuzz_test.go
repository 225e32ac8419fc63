package edge

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/milequest/pushercm/protocol"
)

// FuzzCheckVersion: only protocol 5 to 7 connects; every refusal has its Pusher code and
// a short message that encodes into a valid pusher:error frame.
//
//	go test -fuzz=FuzzCheckVersion ./edge
func FuzzCheckVersion(f *testing.F) {
	for _, s := range []string{"protocol=7", "protocol=5&client=js", "", "protocol=", "protocol=seven", "protocol=3", "protocol=8",
		"protocol=+7", "protocol=007", "protocol=7&protocol=3", "protocol=99999999999999999999999", "protocol=-7", "protocol=%ff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		code, msg := checkVersion(q)
		if (code == 0) != (msg == "") || len(msg) > 64 {
			t.Fatalf("%q: code %d message %q", raw, code, msg)
		}
		v := q["protocol"]
		switch code {
		case 0:
			digits := strings.TrimLeft(strings.TrimPrefix(v[0], "+"), "0")
			if digits != "5" && digits != "6" && digits != "7" {
				t.Fatalf("%q: accepted protocol %q", raw, v[0])
			}
		case protocol.CodeNoProtocol:
			if len(v) > 0 && v[0] != "" {
				t.Fatalf("%q: protocol %q reported missing", raw, v[0])
			}
		case protocol.CodeInvalidVersion, protocol.CodeUnsupportedProtocol:
		default:
			t.Fatalf("%q: code %d", raw, code)
		}
		if code != 0 && !json.Valid(protocol.EncodeError(code, msg, "")) {
			t.Fatalf("%q: refusal frame is not JSON", raw)
		}
	})
}
