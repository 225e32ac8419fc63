'use strict';
// Shared plumbing for the interop tests: configuration from the environment, real
// pusher-js clients whose channel/user auth is signed in-process with the real npm
// `pusher` SDK (as soketi's suite does), and event-driven waits with deadlines.

const crypto = require('node:crypto');
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

function required(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run these tests through test/js/run_test.go (go test ./test/js) or set it by hand`);
  }
  return v;
}

const cfg = {
  wsHost: process.env.PUSHERCM_TEST_WS_HOST || '127.0.0.1',
  wsPort: Number(required('PUSHERCM_TEST_WS_PORT')),
  // Several nodes of one cluster: each client connects to the next in turn.
  wsPorts: (process.env.PUSHERCM_TEST_WS_PORTS || required('PUSHERCM_TEST_WS_PORT')).split(',').map(Number),
  appId: required('PUSHERCM_TEST_APP_ID'),
  key: required('PUSHERCM_TEST_KEY'),
  secret: required('PUSHERCM_TEST_SECRET'),
  // The HTTP API shares the realtime listener unless told otherwise.
  httpHost: process.env.PUSHERCM_TEST_HTTP_HOST || process.env.PUSHERCM_TEST_WS_HOST || '127.0.0.1',
  httpPort: Number(process.env.PUSHERCM_TEST_HTTP_PORT || process.env.PUSHERCM_TEST_WS_PORT),
  // The server never sees this key: the backend SDK encrypts, the client decrypts.
  masterKey: process.env.PUSHERCM_TEST_ENCRYPTION_MASTER_KEY_BASE64 || 'nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0=',
};

// Per-wait deadline; whole tests have their own timeout on top.
const WAIT_MS = Number(process.env.PUSHERCM_TEST_WAIT_MS || 10000);
const TEST_TIMEOUT_MS = Number(process.env.PUSHERCM_TEST_TIMEOUT_MS || 30000);

function backend(overrides = {}) {
  return new PusherServer({
    appId: cfg.appId,
    key: cfg.key,
    secret: cfg.secret,
    host: cfg.httpHost,
    port: String(cfg.httpPort),
    useTLS: false,
    encryptionMasterKeyBase64: cfg.masterKey,
    timeout: WAIT_MS,
    ...overrides,
  });
}

function uniq(prefix) {
  return `${prefix}${crypto.randomBytes(6).toString('hex')}`;
}

// client opens a real pusher-js connection. Options:
//   user:     user data for signin ({id: '1', user_info: {...}})
//   presence: channel_data for presence channels ({user_id, user_info})
//   signer:   the npm pusher instance that signs auth (a wrong secret makes bad auth)
//   subscribeOnly: sign private/presence channels in pushercm's subscribe-only form
//             (a grant without client-events), as /pusher/auth does for such rules
//   key:      app key to connect with
// Every client is disconnected by the test's after hook (track(t, ...)).
let nextPort = 0;

function client(t, opts = {}) {
  const signer = opts.signer || backend();
  const wsPort = cfg.wsPorts[nextPort++ % cfg.wsPorts.length];
  const c = new PusherClient(opts.key || cfg.key, {
    cluster: 'mt1', // pusher-js 8 insists even with wsHost
    wsHost: cfg.wsHost,
    wsPort,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          const data = channelName.startsWith('presence-') ? opts.presence : undefined;
          const auth = signer.authorizeChannel(socketId, channelName, data);
          if (opts.subscribeOnly) auth.auth = subscribeOnlyAuth(socketId, channelName, auth.channel_data);
          callback(null, auth);
        } catch (err) {
          callback(err, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          callback(null, signer.authenticateUser(socketId, opts.user));
        } catch (err) {
          callback(err, null);
        }
      },
    },
  });
  // The WebSocket client bundled in pusher-js (faye-websocket) arms a 30 s close timer in
  // close() even when the server has already closed the socket (e.g. after pusher:error
  // 4009), and never clears it; that would keep node alive for 30 s after the test.
  let socket = null;
  c.connection.bind('connected', () => {
    const conn = c.connection.connection;
    socket = conn && conn.transport ? conn.transport.socket : null;
  });
  t.after(() => {
    c.disconnect();
    if (socket && socket._closeTimer && socket._closeTimer.unref) socket._closeTimer.unref();
  });
  return c;
}

// subscribeOnlyAuth is key:subscribe-only:hex(HMAC-SHA256(secret,
// "subscribe-only:" + socket_id:channel[:channel_data])), pushercm's auth for a
// grant without client-events (protocol.SubscribeOnlyChannelAuth).
function subscribeOnlyAuth(socketId, channel, channelData) {
  let s = `subscribe-only:${socketId}:${channel}`;
  if (channelData) s += `:${channelData}`;
  const sig = crypto.createHmac('sha256', cfg.secret).update(s).digest('hex');
  return `${cfg.key}:subscribe-only:${sig}`;
}

// withTimeout rejects when p has not settled within ms.
function withTimeout(p, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    // The loser of a race keeps its timer; it must not hold the process open.
    timer.unref();
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

// waitEvent resolves with {data, metadata} for the next `event` on a pusher-js
// channel, connection or user object.
function waitEvent(emitter, event, what = event, ms = WAIT_MS) {
  return withTimeout(new Promise((resolve) => {
    const handler = (data, metadata) => {
      emitter.unbind(event, handler);
      resolve({ data, metadata });
    };
    emitter.bind(event, handler);
  }), ms, what);
}

function connected(c) {
  if (c.connection.state === 'connected') return Promise.resolve();
  return waitEvent(c.connection, 'connected', 'connection');
}

// subscribe resolves with the channel once subscription_succeeded arrives.
async function subscribe(c, name) {
  const ch = c.subscribe(name);
  if (ch.subscribed) return ch;
  const ok = waitEvent(ch, 'pusher:subscription_succeeded', `subscription to ${name}`);
  const failed = waitEvent(ch, 'pusher:subscription_error', `subscription to ${name}`).then(({ data }) => {
    throw new Error(`subscription to ${name} failed: ${JSON.stringify(data)}`);
  });
  failed.catch(() => {}); // only the race below reports it
  await Promise.race([ok, failed]);
  return ch;
}

// waitUntil polls cond (sync or async) until it is truthy.
async function waitUntil(cond, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

// recorder collects every event delivered on a channel, in order.
function recorder(ch) {
  const events = [];
  ch.bind_global((event, data) => events.push({ event, data }));
  return events;
}

async function getJSON(b, path, params) {
  const res = await b.get({ path, params });
  return res.json();
}

// channelState asks the HTTP API about one channel.
function channelState(b, name, info = 'subscription_count') {
  return getJSON(b, `/channels/${name}`, { info });
}

module.exports = {
  cfg, WAIT_MS, TEST_TIMEOUT_MS,
  backend, client, uniq, withTimeout, waitEvent, connected, subscribe, waitUntil, recorder,
  getJSON, channelState,
};
