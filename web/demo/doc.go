// Package demo serves the Mile Quest demo app at /demo/ on the realtime
// listener: a team page that joins a presence channel, shows an activity
// feed, relays "cheer" client events, receives SendToUser notifications
// and reads an end-to-end encrypted team channel, all with the pusher-js
// served from this binary (the npm package pinned by test/js's lockfile;
// no CDN).
//
// Guarantees:
//   - Everything the page does goes through the product's public surfaces:
//     the Pusher WebSocket at /app/{key}, POST /pusher/auth and
//     POST /pusher/user-auth with a bearer user token. The demo adds no
//     server-side shortcut to channels or events.
//   - The token endpoint (POST /demo/api/token) exists only when the
//     process runs in dev mode (Config.Mint is set); otherwise it answers
//     404 like any unknown path, and the page says it needs a token.
//   - The page and its assets are embedded: it works with no network.
package demo
