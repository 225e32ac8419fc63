'use strict';
// User authentication: pusher:signin, events sent to a user, terminating a user's
// connections (the server must have sign-in enabled).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const opts = { timeout: h.TEST_TIMEOUT_MS };

async function signedIn(c) {
  c.signin();
  await h.waitUntil(() => c.user.user_data && c.user.serverToUserChannel && c.user.serverToUserChannel.subscribed,
    'signin and #server-to-user subscription');
}

test('signin then sendToUser reaches every connection of the user', opts, async (t) => {
  const id = h.uniq('u');
  const a = h.client(t, { user: { id, user_info: { name: 'A' } } });
  const b = h.client(t, { user: { id, user_info: { name: 'A' } } });
  const other = h.client(t, { user: { id: h.uniq('o') } });
  await Promise.all([signedIn(a), signedIn(b), signedIn(other)]);
  assert.equal(a.user.user_data.id, id);

  const otherEvents = [];
  other.user.bind('hello', (data) => otherEvents.push(data));
  const gotA = h.waitEvent(a.user, 'hello', 'event on connection a');
  const gotB = h.waitEvent(b.user, 'hello', 'event on connection b');
  const res = await h.backend().sendToUser(id, 'hello', { to: 'you' });
  assert.equal(res.status, 200);
  assert.deepEqual((await gotA).data, { to: 'you' });
  assert.deepEqual((await gotB).data, { to: 'you' });

  // Barrier for the other user.
  const barrier = h.waitEvent(other.user, 'barrier');
  await h.backend().sendToUser(other.user.user_data.id, 'barrier', {});
  await barrier;
  assert.deepEqual(otherEvents, [], 'another user got the event');
});

test('terminateUserConnections closes only that user with 4009', opts, async (t) => {
  const id = h.uniq('t');
  const victim = h.client(t, { user: { id } });
  const bystander = h.client(t, { user: { id: h.uniq('b') } });
  await Promise.all([signedIn(victim), signedIn(bystander)]);

  const err = h.waitEvent(victim.connection, 'error', 'termination error');
  const res = await h.backend().terminateUserConnections(id);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  const { data } = await err;
  const code = data && data.error && data.error.data ? data.error.data.code : data && data.data && data.data.code;
  assert.equal(code, 4009, `error ${JSON.stringify(data)}`);
  await h.waitUntil(() => ['disconnected', 'failed'].includes(victim.connection.state), 'victim disconnected');
  assert.equal(bystander.connection.state, 'connected');
});

test('signin with a bad signature is refused', opts, async (t) => {
  const c = h.client(t, { user: { id: 'x' }, signer: h.backend({ secret: 'wrong-secret' }) });
  await h.connected(c);
  const err = h.waitEvent(c.connection, 'error', 'signin error');
  c.signin();
  await err;
  assert.equal(c.user.serverToUserChannel, null);
});
