package protocol

import (
	"encoding/json"
	"testing"
)

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "Ada", "a\"b\\c", "tab\tnl\n\x00\x1f", "héllo ✓", "\u2028\u2029", "bad\xffutf8", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("AppendJSONString(%q) = %s: invalid JSON: %v", s, got, err)
		}
		// encoding/json's own round trip is the reference for what the
		// string decodes to (invalid UTF-8 becomes U+FFFD in both).
		want, _ := json.Marshal(s)
		var ref string
		if err := json.Unmarshal(want, &ref); err != nil {
			t.Fatal(err)
		}
		if back != ref {
			t.Fatalf("round trip of %q = %q, want %q", s, back, ref)
		}
	})
}
