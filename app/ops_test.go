package app_test

import (
	"net/http"
	"testing"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
)

// TestOpsPprof: /debug/pprof/ is served on the ops listener only when
// ops.pprof is on.
func TestOpsPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		a := apptest.Start(t, func(c *config.Config) { c.Ops.Pprof = on })
		resp, err := http.Get("http://" + a.OpsAddr() + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[on]; resp.StatusCode != want {
			t.Fatalf("pprof %v: status %d, want %d", on, resp.StatusCode, want)
		}
	}
}
