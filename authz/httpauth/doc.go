// Package httpauth serves the pusher-js auth endpoints on the realtime
// listener: POST /pusher/auth (channel authorization) and POST
// /pusher/user-auth (user sign-in), exactly as pusher-js 8 calls them
// (PUSHER-PROTOCOL.md §3.7): an application/x-www-form-urlencoded body with
// socket_id, channel_name and any extra params, the user's JWT in
// `Authorization: Bearer`, and a JSON answer pusher-js reads as is.
//
// Guarantees:
//
//   - Success is 200 with exactly {"auth", "channel_data"?, "shared_secret"?}
//     or {"auth", "user_data"}; refusals are JSON {"error", "reason"} with
//     401 (token missing or bad, plus WWW-Authenticate), 403 (a rule or the
//     missing encryption key refuses; disallowed origin), 400 (malformed
//     form, bad socket id, channel name or user_info), 405, 413 (body over
//     MaxBodyBytes, never read past the limit) or 415 (not form-encoded).
//     Refusal bodies never name the deciding rule or echo the token; the
//     service's logs and metrics have the rule.
//   - Responses are never cached (Cache-Control: no-store): they carry
//     signatures bound to one connection.
//   - CORS: a request with an Origin header must come from an allowed origin
//     (Config.AllowedOrigins, judged by protocol.OriginAllowed, the check the
//     WebSocket upgrade uses: exact, "*", or "*.example.com"); others get 403. Credentials are never
//     allowed (the token travels in a header, never in a cookie), so an
//     empty list means any origin, answered with "*". Preflights allow POST
//     with the Authorization and Content-Type headers and whatever other
//     well-formed headers the browser asks for (pusher-js `headers`).
//   - The optional user_info param (a JSON object) is browser-controlled
//     and passed as untrusted (authz BrowserUserInfo): only the keys the
//     Authorizer allows (http.browserUserInfoKeys, none by default) are
//     signed, the token's claims (user id, name) always win, and channel
//     rule expressions never see it.
package httpauth
