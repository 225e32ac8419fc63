'use strict';
// Public, cache, private and encrypted channels with real pusher-js clients and the
// npm pusher SDK as the backend.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const opts = { timeout: h.TEST_TIMEOUT_MS };

test('public channel: backend trigger reaches the client', opts, async (t) => {
  const c = h.client(t);
  const name = h.uniq('public-');
  const ch = await h.subscribe(c, name);
  assert.match(c.connection.socket_id, /^\d+\.\d+$/);

  const got = h.waitEvent(ch, 'greeting');
  const res = await h.backend().trigger(name, 'greeting', { message: 'hello', path: 'abc/d' });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  const { data } = await got;
  assert.deepEqual(data, { message: 'hello', path: 'abc/d' });
});

test('public channel: unsubscribe vacates the channel', opts, async (t) => {
  const c = h.client(t);
  const b = h.backend();
  const name = h.uniq('public-');
  await h.subscribe(c, name);
  assert.deepEqual(await h.channelState(b, name), { occupied: true, subscription_count: 1 });
  c.unsubscribe(name);
  await h.waitUntil(async () => (await h.channelState(b, name)).occupied === false, 'channel vacated');
});

for (const prefix of ['cache-', 'private-cache-', 'private-encrypted-cache-', 'presence-cache-']) {
  test(`${prefix} channel: first subscriber gets cache_miss, later ones the cached event`, opts, async (t) => {
    const b = h.backend();
    const name = h.uniq(prefix);
    const first = h.client(t, { presence: { user_id: '1' } });
    const ch1 = first.subscribe(name);
    const miss = await h.waitEvent(ch1, 'pusher:cache_miss', 'cache miss');
    assert.equal(miss.data, undefined);

    const delivered = h.waitEvent(ch1, 'cached-event');
    await b.trigger(name, 'cached-event', { v: 1 });
    assert.deepEqual((await delivered).data, { v: 1 });

    const state = await h.channelState(b, name, 'cache');
    assert.equal(state.occupied, true);
    assert.ok(state.cache && state.cache.ttl > 0 && state.cache.ttl <= 1800, JSON.stringify(state));
    if (!prefix.startsWith('private-encrypted-')) { // the server only sees ciphertext there
      assert.deepEqual(JSON.parse(state.cache.data), { v: 1 });
    }

    const second = h.client(t, { presence: { user_id: '2' } });
    const ch2 = second.subscribe(name);
    const events = h.recorder(ch2);
    const cached = await h.waitEvent(ch2, 'cached-event', 'cached event replay');
    assert.deepEqual(cached.data, { v: 1 });
    assert.equal(events.some((e) => e.event === 'pusher:cache_miss'), false, 'no cache_miss after a hit');
  });
}

test('private channel: signed auth subscribes and receives', opts, async (t) => {
  const c = h.client(t);
  const name = h.uniq('private-');
  const ch = await h.subscribe(c, name);
  const got = h.waitEvent(ch, 'secret');
  await h.backend().trigger(name, 'secret', { s: 42 });
  assert.deepEqual((await got).data, { s: 42 });
});

for (const prefix of ['private-', 'presence-', 'private-encrypted-']) {
  test(`${prefix} channel: wrong auth gives subscription_error and keeps the socket`, opts, async (t) => {
    const c = h.client(t, { signer: h.backend({ secret: 'wrong-secret' }), presence: { user_id: '1' } });
    await h.connected(c);
    const name = h.uniq(prefix);
    const ch = c.subscribe(name);
    const { data } = await h.waitEvent(ch, 'pusher:subscription_error', 'subscription_error');
    assert.equal(data.type, 'AuthError', JSON.stringify(data));
    assert.equal(data.status, 401, JSON.stringify(data));
    assert.equal(ch.subscribed, false);
    assert.equal(c.connection.state, 'connected', 'bad channel auth must not close the socket');

    // The same socket can still use public channels.
    const pub = await h.subscribe(c, h.uniq('public-'));
    const got = h.waitEvent(pub, 'still-alive');
    await h.backend().trigger(pub.name, 'still-alive', {});
    await got;
  });
}

test('private-encrypted channel: backend encrypts, the client decrypts', opts, async (t) => {
  const c = h.client(t);
  const name = h.uniq('private-encrypted-');
  const ch = await h.subscribe(c, name);
  const got = h.waitEvent(ch, 'sealed');
  await h.backend().trigger(name, 'sealed', { plain: 'text', n: 7 });
  assert.deepEqual((await got).data, { plain: 'text', n: 7 });
});

test('unknown app key: refused with 4001, no reconnect', opts, async (t) => {
  const c = h.client(t, { key: 'no-such-key' });
  const err = await h.waitEvent(c.connection, 'error', 'connection error');
  const code = err.data && err.data.error && err.data.error.data && err.data.error.data.code;
  assert.equal(code, 4001, `error ${JSON.stringify(err.data)}`);
  await h.waitUntil(() => ['disconnected', 'failed'].includes(c.connection.state), 'disconnected state');
});
