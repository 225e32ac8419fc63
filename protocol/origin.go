package protocol

import "strings"

// OriginAllowed reports whether origin (an Origin header) passes allowed, the
// origin policy shared by the WebSocket upgrade and the auth endpoints' CORS check.
// An entry is an exact origin ("https://app.example.com", any case), "*" for any
// origin, or "*.example.com" for the hosts under example.com (not example.com
// itself, and a port makes a different host). An empty list or an empty origin
// (a request from something other than a browser) is allowed.
func OriginAllowed(allowed []string, origin string) bool {
	if len(allowed) == 0 || origin == "" {
		return true
	}
	for _, a := range allowed {
		switch {
		case a == "*", strings.EqualFold(a, origin):
			return true
		case strings.HasPrefix(a, "*."):
			host := origin
			if i := strings.Index(host, "://"); i >= 0 {
				host = host[i+3:]
			}
			if strings.HasSuffix(strings.ToLower(host), strings.ToLower(a[1:])) {
				return true
			}
		}
	}
	return false
}
