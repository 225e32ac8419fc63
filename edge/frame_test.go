package edge

import (
	"bytes"
	"strings"
	"testing"

	"github.com/milequest/pushercm/protocol"
)

// eventFrame must produce exactly the frame of encoding then framing, on both
// sides of each header-size boundary and with data that needs escaping.
func TestEventFrameMatchesWSFrame(t *testing.T) {
	for _, n := range []int{0, 1, 60, 70, 100, 124, 125, 126, 127, 1000, 65000, 65500, 65535, 65536, 70000, 300000} {
		for _, fill := range []string{"x", `"`, "é\n"} {
			data := strings.Repeat(fill, n/len(fill))
			want := wsFrame(opText, protocol.EncodeEvent("ev", "private-c", data, "u1"))
			got := eventFrame("ev", "private-c", data, "u1")
			if !bytes.Equal(got, want) {
				t.Fatalf("data %d×%q: frames differ (len %d, want %d)", n/len(fill), fill, len(got), len(want))
			}
			if cap(got) != len(got) {
				t.Fatalf("data %d×%q: frame has spare capacity %d", n/len(fill), fill, cap(got)-len(got))
			}
		}
	}
}

func BenchmarkEventFrame(b *testing.B) {
	data := `{"distance_km":12.5,"team":"t1","user":"u-42","ts":1764600000}`
	b.Run("encode+frame", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = protocol.AppendEvent(buf[:0], "activity", "private-team-t1", data, "")
			_ = wsFrame(opText, buf)
			buf = nil // as Publish did: a fresh buffer per call
		}
	})
	b.Run("eventFrame", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = eventFrame("activity", "private-team-t1", data, "")
		}
	})
}
