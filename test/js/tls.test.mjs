// pusher-js over wss:// and the npm pusher SDK over https:// against a
// pushercm whose realtime listener serves TLS with a certificate from a CA
// the test made; node trusts that CA through NODE_EXTRA_CA_CERTS.
//
// Run through tls_run_test.go (go test ./test/js -run TestPusherJSOverTLS),
// which makes the certificates, starts pushercm in-process and mints the
// user token.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Pusher = require('pusher-js');
const PusherServer = require('pusher');

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through tls_run_test.go`);
  return v;
}

const cfg = {
  host: required('PUSHERCM_TLS_HOST'),
  port: Number(required('PUSHERCM_TLS_PORT')),
  appId: required('PUSHERCM_TLS_APP_ID'),
  key: required('PUSHERCM_TLS_KEY'),
  secret: required('PUSHERCM_TLS_SECRET'),
  userToken: required('PUSHERCM_TLS_USER_TOKEN'),
};
required('NODE_EXTRA_CA_CERTS');
const base = `https://${cfg.host}:${cfg.port}`;
const WAIT_MS = 10000;
const opts = { timeout: 30000 };

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

function client(t) {
  const headers = { Authorization: `Bearer ${cfg.userToken}` };
  const c = new Pusher(cfg.key, {
    cluster: 'mt1', // pusher-js 8 insists even with wsHost
    wsHost: cfg.host,
    wssPort: cfg.port,
    forceTLS: true,
    enabledTransports: ['ws'], // with forceTLS: wss://
    disableStats: true,
    channelAuthorization: { endpoint: `${base}/pusher/auth`, transport: 'ajax', headers },
  });
  t.after(() => c.disconnect());
  return c;
}

function backend() {
  return new PusherServer({
    appId: cfg.appId, key: cfg.key, secret: cfg.secret,
    host: cfg.host, port: String(cfg.port), useTLS: true,
  });
}

test('pusher-js connects over wss:// and receives an event the npm SDK triggers over https://', opts, async (t) => {
  const c = client(t);
  const ch = c.subscribe('tls-public');
  await withTimeout(once(ch, 'pusher:subscription_succeeded'), 'the subscription');
  assert.equal(c.connection.state, 'connected');
  const got = withTimeout(once(ch, 'over-tls'), 'the event');
  const res = await backend().trigger('tls-public', 'over-tls', { msg: 'encrypted in transit' });
  assert.equal(res.status, 200);
  assert.deepEqual(await got, { msg: 'encrypted in transit' });
});

test('private channel authorized by /pusher/auth over https://', opts, async (t) => {
  const c = client(t);
  const ch = c.subscribe('private-team-t1');
  const r = await withTimeout(Promise.race([
    once(ch, 'pusher:subscription_succeeded').then(() => ({ ok: true })),
    once(ch, 'pusher:subscription_error').then((error) => ({ ok: false, error })),
  ]), 'the subscription');
  assert.equal(r.ok, true, JSON.stringify(r.error));
});

test('the npm SDK reads channel state over https://', opts, async () => {
  const res = await backend().get({ path: '/channels', params: {} });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(typeof body.channels, 'object');
});
