package edge

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
)

// routedServer is a server with routes like the product's: the HTTP API's
// subtree, the WebSocket path with a wildcard, method routes, and an exact
// path beside a subtree.
func routedServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	named := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, name+" "+r.Pattern+" key="+r.PathValue("key"))
		})
	}
	s.HandleLimit("GET /demo/", named("demo"), 100)
	s.HandleLimit("POST /hooks", named("hooks"), 200)
	s.Handle("/tree/", named("tree"))
	s.Handle("/tree/exact", named("exact"))
	return s
}

// answer is what ServeHTTP wrote for method and target.
func answer(s *Server, method, target string) string {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return fmt.Sprintf("%d loc=%q allow=%q %s", rec.Code, rec.Header().Get("Location"), rec.Header().Get("Allow"), rec.Body.String())
}

// TestRouteCacheAnswersLikeTheMux: every request, asked three times with
// different queries (so a cached redirect would show the first one's), gets
// what a server without the cache answers.
func TestRouteCacheAnswersLikeTheMux(t *testing.T) {
	cached, plain := routedServer(t), routedServer(t)
	plain.hostRoutes = true // turns the handler cache off
	cases := []struct{ method, path string }{
		{"POST", "/apps/app-id/events"},
		{"POST", "/apps/app-id/batch_events"},
		{"GET", "/apps/app-id/channels/presence-x"},
		{"GET", "/apps"},                  // /tree -> /tree/ redirect
		{"GET", "/apps//app-id/channels"}, // cleaned: redirect
		{"GET", "/apps/a/../b"},
		{"GET", "/app/app-key"}, // wildcard: path values
		{"GET", "/app/other"},
		{"GET", "/app/%61pp-key"}, // the key unescaped as the mux does
		{"GET", "/app/a%2Fb"},     // an escaped slash stays in the key
		{"GET", "/app/"},
		{"GET", "/app/a/b"},
		{"GET", "/demo/"},
		{"GET", "/demo"},
		{"POST", "/demo/x"}, // 405
		{"HEAD", "/demo/x"},
		{"POST", "/hooks"},
		{"GET", "/hooks"},
		{"GET", "/tree"},
		{"GET", "/tree/exact"},
		{"GET", "/tree/other"},
		{"GET", "/nope"},
		{"GET", "/tree/a%2Fb"},
		{"GET", "/tree/%61"},
	}
	for _, c := range cases {
		for i := range 3 {
			target := c.path + "?q=" + strconv.Itoa(i)
			if got, want := answer(cached, c.method, target), answer(plain, c.method, target); got != want {
				t.Errorf("%s %s (ask %d):\n got %s\nwant %s", c.method, target, i+1, got, want)
			}
		}
	}
	if len(cached.routes.m) == 0 {
		t.Fatal("nothing was cached")
	}
	for k, v := range cached.routes.m {
		if k.path == "/apps" || k.path == "/tree" || k.path == "/demo" || v.pattern == "" {
			t.Errorf("cached %v -> %q: a redirect or a miss", k, v.pattern)
		}
	}
}

// TestBodyLimitCache: the cached limits are bodyLimit's, whatever the query.
func TestBodyLimitCache(t *testing.T) {
	s := routedServer(t)
	uris := []string{
		"/apps/app-id/events?auth_key=k", "/apps/app-id/events?other", "/demo/", "/demo/x?y",
		"/hooks", "/hooks?x", "/nope", "/apps", "/a%2Fb", "http://h/hooks", "*", "/tree/exact",
	}
	for _, method := range []string{"GET", "POST"} {
		for range 2 {
			for _, u := range uris {
				if got, want := s.bodyLimitOf(method, u), s.bodyLimit(method, u); got != want {
					t.Errorf("%s %s: %d, want %d", method, u, got, want)
				}
			}
		}
	}
	if n := s.bodyLimitOf("POST", "/hooks"); n != 200 {
		t.Fatalf("POST /hooks limit %d, want 200", n)
	}
}

// TestRouteCacheIsBounded: made-up paths fill the cache to its size and no
// further, and long paths are not kept.
func TestRouteCacheIsBounded(t *testing.T) {
	s := routedServer(t)
	for i := range 3 * routeCacheSize {
		answer(s, "GET", "/tree/"+strconv.Itoa(i))
		s.bodyLimitOf("GET", "/tree/"+strconv.Itoa(i))
	}
	if n := len(s.routes.m); n != routeCacheSize {
		t.Fatalf("%d routes cached, want %d", n, routeCacheSize)
	}
	if n := len(s.limits.m); n != routeCacheSize {
		t.Fatalf("%d limits cached, want %d", n, routeCacheSize)
	}
	var c routeCache[int]
	long := "/" + string(make([]byte, routeCacheKeyBytes))
	c.put("GET", long, 1)
	if _, ok := c.get("GET", long); ok {
		t.Fatal("a path over routeCacheKeyBytes was cached")
	}
}

// TestWSKey: the key ServeHTTP binds is the mux's for every path the mux
// routes to wsPattern.
func TestWSKey(t *testing.T) {
	mux := http.NewServeMux()
	var bound string
	checked := 0
	mux.HandleFunc(wsPattern, func(_ http.ResponseWriter, r *http.Request) { bound = r.PathValue("key") })
	for _, p := range []string{"/app/app-key", "/app/%61pp-key", "/app/a%2Fb", "/app/a%20b", "/app/%E2%9C%93", "/app/a+b", "/app/a;b", "/app/%zz"} {
		u, err := url.Parse(p)
		if err != nil {
			u = &url.URL{Path: p, RawPath: p} // an escape url.Parse refuses
		}
		r := &http.Request{Method: "GET", URL: u}
		bound = ""
		if _, pattern := mux.Handler(r); pattern != wsPattern {
			continue
		}
		mux.ServeHTTP(httptest.NewRecorder(), r)
		checked++
		got, ok := wsKey(r.URL.EscapedPath())
		if !ok || got != bound {
			t.Errorf("%s: wsKey %q (%v), the mux binds %q", p, got, ok, bound)
		}
	}
	if checked < 7 {
		t.Fatalf("only %d paths reached the WebSocket route", checked)
	}
}

func TestCleanPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/a": true, "/a/": true, "/a/b": true, "/a/b/": true,
		"": false, "a": false, "//": false, "/a//b": false, "/./a": false, "/a/.": false,
		"/a/..": false, "/a/../b": false, "/.a": true, "/a..": true,
	} {
		if got := cleanPath(p); got != want {
			t.Errorf("cleanPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// BenchmarkRoute is ServeHTTP's routing of an HTTP API publish: the mux, and
// the cache in front of it.
//
//	go test -run '^$' -bench Route -benchmem ./edge
func BenchmarkRoute(b *testing.B) {
	s, err := New(testConfig())
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/apps/app-id/events?auth_key=k&auth_signature=s", nil)
	b.Run("mux", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.mux.Handler(r)
		}
	})
	b.Run("cache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.routeOf(r)
		}
	})
}
