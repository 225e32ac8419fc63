package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeData: event data is accepted only as JSON; a JSON string gives its value,
// which re-encodes and decodes to itself, and any other value gives its compact JSON
// text, which decodes to itself.
//
//	go test -fuzz=FuzzDecodeData ./edge/httpapi
func FuzzDecodeData(f *testing.F) {
	for _, s := range []string{`"x"`, `"{\"some\":\"data\"}"`, `{"k": [1, 2]}`, `null`, ``, ` "a\u2028" `, `1e999`, `[`, `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, aerr := decodeData(raw)
		trimmed := bytes.TrimSpace(raw)
		if aerr != nil {
			if s != "" || aerr.status != 400 {
				t.Fatalf("%q: error %+v with data %q", raw, aerr, s)
			}
			// The handler passes what encoding/json read: any JSON value but null.
			if json.Valid(raw) && string(trimmed) != "null" {
				t.Fatalf("refused the JSON value %q", raw)
			}
			return
		}
		if !json.Valid(trimmed) {
			t.Fatalf("accepted %q, which is not JSON", raw)
		}
		enc, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if again, aerr := decodeData(enc); aerr != nil || again != s {
			t.Fatalf("string round trip of %q: %q %+v", s, again, aerr)
		}
		if trimmed[0] != '"' {
			if !json.Valid([]byte(s)) {
				t.Fatalf("%q gave %q, which is not JSON", raw, s)
			}
			if again, aerr := decodeData([]byte(s)); aerr != nil || again != s {
				t.Fatalf("compact form %q is not stable: %q %+v", s, again, aerr)
			}
		}
	})
}
