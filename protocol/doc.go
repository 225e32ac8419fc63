// Package protocol is the shared vocabulary of the Pusher Channels protocol v7 and
// HTTP API as pushercm speaks it. It performs no I/O and keeps no state beyond a
// process-wide socket id counter, so authz, delivery and edge can all import it.
//
// It guarantees:
//   - channel names are classified by the longest matching prefix
//     (private-encrypted-cache- before private-encrypted- before private-, ...) and
//     validated against Pusher's rules (164 characters, [A-Za-z0-9_\-=@,.;]);
//   - every HMAC signature (private, presence, user sign-in, HTTP API request, webhook)
//     is computed exactly as pusher-js, pusher-http-go v5 and the npm pusher SDK compute
//     it, and every verification compares in constant time;
//   - HTTP request verification checks auth_key, auth_version 1.0, the 600 s timestamp
//     window, body_md5 and the signature, and reports which one failed with a sentinel
//     error (ErrAuthMissing, ErrAuthVersion, ErrAuthKey, ErrAuthTimestamp, ErrBodyMD5,
//     ErrSignature) usable with errors.Is;
//   - socket ids match \d+\.\d+ and are unique within the process;
//   - one origin policy (OriginAllowed) serves the WebSocket upgrade and the auth
//     endpoints' CORS check, so the two cannot disagree;
//   - frames are encoded the way pusher-js expects (data as a JSON string) and decoded
//     leniently (data as an object or as a string holding JSON).
//
// Limits carries Pusher's defaults; a zero field means "use the default".
package protocol
