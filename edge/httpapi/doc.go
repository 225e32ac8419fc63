// Package httpapi serves the Pusher Channels HTTP API (PUSHER-PROTOCOL.md §5) for one app,
// so that stock pusher-http-go v5 and npm pusher SDKs can trigger events and query state.
//
// Routes, all under /apps/{app_id} (mount the handler at "/apps/" without stripping the
// prefix: the SDKs sign the full path):
//
//	POST /events                              trigger on 1..100 channels
//	POST /batch_events                        trigger up to 10 events
//	GET  /channels                            occupied channels (filter_by_prefix, info)
//	GET  /channels/{channel}                  one channel (info=user_count,subscription_count,cache)
//	GET  /channels/{channel}/users            presence members
//	POST /users/{user_id}/terminate_connections
//
// Guarantees:
//   - Every request is authenticated before it touches the Backend: auth_key must be the
//     app key, auth_version 1.0, auth_timestamp within Config.TimestampWindow (600 s),
//     body_md5 must match a non-empty body, and auth_signature is checked in constant
//     time against the decoded path (r.URL.Path, as pusher-http-go signs raw channel names
//     such as presence-a@b,c;d=e) and, failing that, the escaped path.
//   - Every response, success or error, is a JSON object; errors are
//     {"error": "...", "code": N}. The SDKs json-decode success bodies, so "{}" is the
//     minimum.
//   - Status codes follow Pusher: 400 bad parameters, 401 authentication, 403 app
//     disabled, 404 unknown app id or route, 405 wrong method, 413 event data over
//     Limits.MaxPayloadBytes or a body over Config.MaxRequestBytes, 429 when the
//     optional Limiter refuses, 500/503 for backend failures (a Backend panic included).
//   - A trigger is validated in full (names, sizes, every batch item) before anything is
//     published, so a rejected request publishes nothing.
//   - Triggers on #server-to-user-{id} go to Backend.SendToUser; socket_id excludes that
//     connection from the other channels.
package httpapi
