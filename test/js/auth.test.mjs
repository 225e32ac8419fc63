// Channel authorization with real pusher-js 8.6.0 against a real pushercm
// process: pusher-js calls pushercm's own /pusher/auth and /pusher/user-auth
// endpoints over HTTP with `Authorization: Bearer <user JWT>`, exactly as a
// browser app configured with channelAuthorization.headers would.
//
// Run through auth_run_test.go (go test ./test/js -run TestPusherJSAuth),
// which starts pushercm in-process and mints the tokens; the variables below
// can also point at a running `pushercm serve --dev`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Pusher = require('pusher-js');
const PusherServer = require('pusher');

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through auth_run_test.go`);
  return v;
}

const cfg = {
  host: process.env.PUSHERCM_AUTH_HOST || '127.0.0.1',
  port: Number(required('PUSHERCM_AUTH_PORT')),
  key: required('PUSHERCM_AUTH_KEY'),
  // u1, member of team t1, name "Ann".
  userToken: required('PUSHERCM_AUTH_USER_TOKEN'),
  // Signed with another key: the server must refuse it.
  badToken: required('PUSHERCM_AUTH_BAD_TOKEN'),
  // For the backend SDK that publishes encrypted events.
  appId: required('PUSHERCM_AUTH_APP_ID'),
  secret: required('PUSHERCM_AUTH_SECRET'),
  masterKey: required('PUSHERCM_AUTH_ENCRYPTION_MASTER_KEY_BASE64'),
};
const base = `http://${cfg.host}:${cfg.port}`;
const WAIT_MS = 10000;
const opts = { timeout: 30000 };

// client is a pusher-js client whose auth goes to pushercm's endpoints.
function client(t, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const c = new Pusher(cfg.key, {
    cluster: 'mt1', // pusher-js 8 insists even with wsHost
    wsHost: cfg.host,
    wsPort: cfg.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: { endpoint: `${base}/pusher/auth`, transport: 'ajax', headers },
    userAuthentication: { endpoint: `${base}/pusher/user-auth`, transport: 'ajax', headers },
  });
  t.after(() => c.disconnect());
  return c;
}

function withTimeout(p, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
    timer.unref();
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

function once(emitter, event) {
  return new Promise((resolve) => {
    const h = (data) => {
      emitter.unbind(event, h);
      resolve(data);
    };
    emitter.bind(event, h);
  });
}

// outcome subscribes and resolves with {ok: true, channel} or {ok: false, error}.
function outcome(c, name) {
  const ch = c.subscribe(name);
  return withTimeout(Promise.race([
    once(ch, 'pusher:subscription_succeeded').then(() => ({ ok: true, channel: ch })),
    once(ch, 'pusher:subscription_error').then((error) => ({ ok: false, error })),
  ]), `the subscription to ${name}`);
}

test('private channel of the token\'s own user is joined', opts, async (t) => {
  const r = await outcome(client(t, cfg.userToken), 'private-user-u1');
  assert.equal(r.ok, true, JSON.stringify(r.error));
});

test('team channel is joined by a team member', opts, async (t) => {
  const r = await outcome(client(t, cfg.userToken), 'private-team-t1');
  assert.equal(r.ok, true, JSON.stringify(r.error));
});

test('presence channel: the member is the token\'s user with its name', opts, async (t) => {
  const r = await outcome(client(t, cfg.userToken), 'presence-team-t1');
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assert.equal(r.channel.members.me.id, 'u1');
  assert.deepEqual(r.channel.members.me.info, { name: 'Ann' });
  assert.equal(r.channel.members.count, 1);
});

test('encrypted team channel is joined and receives decryptable events', opts, async (t) => {
  const c = client(t, cfg.userToken);
  const r = await outcome(c, 'private-encrypted-team-t1');
  assert.equal(r.ok, true, JSON.stringify(r.error));
  // The npm SDK encrypts with the master key; pusher-js decrypts with the
  // shared_secret pushercm's endpoint returned, so this only arrives intact
  // if that secret is right.
  const backend = new PusherServer({
    appId: cfg.appId, key: cfg.key, secret: cfg.secret, host: cfg.host, port: String(cfg.port),
    useTLS: false, encryptionMasterKeyBase64: cfg.masterKey,
  });
  const got = withTimeout(once(r.channel, 'secret-event'), 'the encrypted event');
  await backend.trigger('private-encrypted-team-t1', 'secret-event', { msg: 'hi' });
  assert.deepEqual(await got, { msg: 'hi' });
});

test('another user\'s private channel is refused with 403', opts, async (t) => {
  const r = await outcome(client(t, cfg.userToken), 'private-user-u2');
  assert.equal(r.ok, false);
  assert.equal(r.error.type, 'AuthError');
  assert.equal(r.error.status, 403);
});

test('another team\'s presence channel is refused with 403', opts, async (t) => {
  const r = await outcome(client(t, cfg.userToken), 'presence-team-t9');
  assert.equal(r.ok, false);
  assert.equal(r.error.status, 403);
});

test('a channel no rule allows is refused with 403', opts, async (t) => {
  const r = await outcome(client(t, cfg.userToken), 'private-anything');
  assert.equal(r.ok, false);
  assert.equal(r.error.status, 403);
});

test('no token is refused with 401', opts, async (t) => {
  const r = await outcome(client(t, ''), 'private-user-u1');
  assert.equal(r.ok, false);
  assert.equal(r.error.status, 401);
});

test('a token signed with another key is refused with 401', opts, async (t) => {
  const r = await outcome(client(t, cfg.badToken), 'private-user-u1');
  assert.equal(r.ok, false);
  assert.equal(r.error.status, 401);
});

test('user sign-in through /pusher/user-auth', opts, async (t) => {
  const c = client(t, cfg.userToken);
  const failed = once(c.user, 'pusher:signin_error').then((e) => {
    throw new Error(`signin failed: ${JSON.stringify(e)}`);
  });
  failed.catch(() => {});
  c.signin();
  await withTimeout(Promise.race([
    (async () => {
      // signinDonePromise exists once the connection is up and signin began.
      while (!c.user.signinDonePromise) await new Promise((r) => setTimeout(r, 10));
      await c.user.signinDonePromise;
    })(),
    failed,
  ]), 'signin');
  assert.equal(c.user.user_data && c.user.user_data.id, 'u1');
  assert.deepEqual(c.user.user_data.user_info, { name: 'Ann' });
  // pusher-js then joins #server-to-user-u1 on its own; the server accepts it.
  await withTimeout((async () => {
    while (!(c.user.serverToUserChannel && c.user.serverToUserChannel.subscribed)) {
      await new Promise((r) => setTimeout(r, 10));
    }
  })(), 'the #server-to-user-u1 subscription');
});

test('sign-in without a token fails with 401', opts, async (t) => {
  const c = client(t, '');
  const err = withTimeout(once(c.user, 'pusher:signin_error'), 'signin_error');
  c.signin();
  const e = await err;
  assert.equal(e.type, 'AuthError');
  assert.equal(e.status, 401);
});
