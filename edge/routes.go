package edge

import (
	"net/http"
	"strings"
	"sync"
)

// routeCache remembers what the mux answered for a request path, so that the
// requests that make up nearly all of the listener's HTTP traffic (the HTTP
// API's few paths, the WebSocket path) are not routed through the ServeMux's
// tree on every request: that was a tenth of an HTTP API publish's CPU.
//
// It is exact: a path is cached only where the mux's answer depends on
// nothing but the method and the path (routes are fixed once the server
// starts), and it holds at most routeCacheSize paths of at most
// routeCacheKeyBytes each; once full it stops adding, so paths a client makes
// up cannot grow it.
type routeCache[V any] struct {
	mu sync.RWMutex
	m  map[routeKey]V
}

type routeKey struct{ method, path string }

const (
	routeCacheSize     = 1024
	routeCacheKeyBytes = 256
)

func (c *routeCache[V]) get(method, path string) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[routeKey{method, path}]
	c.mu.RUnlock()
	return v, ok
}

func (c *routeCache[V]) put(method, path string, v V) {
	if len(path) > routeCacheKeyBytes {
		return
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[routeKey]V)
	}
	if len(c.m) < routeCacheSize {
		c.m[routeKey{strings.Clone(method), strings.Clone(path)}] = v
	}
	c.mu.Unlock()
}

// cachedRoute is a cached answer of the mux for ServeHTTP.
type cachedRoute struct {
	h       http.Handler
	pattern string
}

// routeOf is s.mux.Handler(r), from the cache when it can be. Patterns with
// wildcards are not cached (the mux must set their path values) but
// wsPattern, whose value ServeHTTP sets; nor are redirects (their target
// carries the request's query) and 404s, nor anything when a route names a
// host.
func (s *Server) routeOf(r *http.Request) (http.Handler, string) {
	if s.hostRoutes || r.Method == http.MethodConnect {
		return s.mux.Handler(r)
	}
	path := r.URL.EscapedPath()
	if rt, ok := s.routes.get(r.Method, path); ok {
		return rt.h, rt.pattern
	}
	h, pattern := s.mux.Handler(r)
	if pattern != "" && (pattern == wsPattern || !strings.Contains(pattern, "{")) && cleanPath(path) {
		if _, pp, _ := strings.Cut(pattern, "/"); "/"+pp != path+"/" { // not the /tree -> /tree/ redirect
			s.routes.put(r.Method, path, cachedRoute{h, pattern})
		}
	}
	return h, pattern
}

// cleanPath reports whether p is what the mux's path cleaning leaves as it
// is (otherwise the mux answers with a redirect): no empty, "." or ".."
// segment but a trailing slash.
func cleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for rest := p[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." || (seg == "" && more) {
			return false
		}
		if !more {
			return true
		}
		rest = after
	}
}

// bodyLimitOf is bodyLimit, from the cache when it can be: the limit depends
// only on the method and the path of an origin-form request URI without
// escapes or control bytes.
func (s *Server) bodyLimitOf(method, uri string) int64 {
	path, _, _ := strings.Cut(uri, "?")
	cacheable := strings.HasPrefix(path, "/") && !strings.ContainsFunc(uri, func(r rune) bool { return r < ' ' || r == 0x7f || r == '%' })
	if cacheable {
		if n, ok := s.limits.get(method, path); ok {
			return n
		}
	}
	n := s.bodyLimit(method, uri)
	if cacheable {
		s.limits.put(method, path, n)
	}
	return n
}
