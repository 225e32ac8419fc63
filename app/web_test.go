package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
)

func httpStatus(t *testing.T, method, url string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(`{"user":"ana","team":"trailblazers"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestDemoAndConsoleRoutes: the demo is on with --dev and with
// demo.enabled; its token endpoint exists only in dev mode; the console
// is served only with ops.console.
func TestDemoAndConsoleRoutes(t *testing.T) {
	off, on := false, true
	tests := []struct {
		name                 string
		mutate               func(*config.Config)
		page, token, console int
	}{
		{"dev", nil, 200, 200, 404},
		{"dev, demo off", func(c *config.Config) { c.Demo.Enabled = &off }, 404, 404, 404},
		{"not dev, demo on", func(c *config.Config) { apptest.Production(c); c.Demo.Enabled = &on }, 200, 404, 404},
		{"not dev, demo unset", func(c *config.Config) { apptest.Production(c); c.Demo.Enabled = nil }, 404, 404, 404},
		{"console on", func(c *config.Config) { c.Ops.Console = true }, 200, 200, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := apptest.Start(t, tc.mutate)
			rt, ops := "http://"+a.HTTPAddr(), "http://"+a.OpsAddr()
			if got := httpStatus(t, "GET", rt+"/demo/"); got != tc.page {
				t.Errorf("GET /demo/ = %d, want %d", got, tc.page)
			}
			if got := httpStatus(t, "POST", rt+"/demo/api/token"); got != tc.token {
				t.Errorf("POST /demo/api/token = %d, want %d", got, tc.token)
			}
			if got := httpStatus(t, "GET", ops+"/console/"); got != tc.console {
				t.Errorf("GET /console/ = %d, want %d", got, tc.console)
			}
		})
	}
}
