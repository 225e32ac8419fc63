'use strict';
// Client events between pusher-js clients (the server must have them enabled).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const opts = { timeout: h.TEST_TIMEOUT_MS };

test('client events on a private channel reach others, not the sender', opts, async (t) => {
  const b = h.backend();
  const name = h.uniq('private-');
  const sender = h.client(t);
  const receiver = h.client(t);
  const chS = await h.subscribe(sender, name);
  const chR = await h.subscribe(receiver, name);
  const senderEvents = h.recorder(chS);

  const got = h.waitEvent(chR, 'client-greeting');
  assert.equal(chS.trigger('client-greeting', { message: 'hi' }), true);
  assert.deepEqual((await got).data, { message: 'hi' });

  // Barrier on the sender's socket: a backend event after the client event.
  const barrier = h.waitEvent(chS, 'barrier');
  await b.trigger(name, 'barrier', {});
  await barrier;
  assert.equal(senderEvents.some((e) => e.event === 'client-greeting'), false, 'client event echoed to its sender');
});

test('client events on a presence channel carry the sender user_id', opts, async (t) => {
  const name = h.uniq('presence-');
  const sender = h.client(t, { presence: { user_id: '10', user_info: { name: 'S' } } });
  const receiver = h.client(t, { presence: { user_id: '20', user_info: { name: 'R' } } });
  const chS = await h.subscribe(sender, name);
  const chR = await h.subscribe(receiver, name);
  await h.waitUntil(() => chS.members.count === 2, 'both members');

  const got = h.waitEvent(chR, 'client-move');
  chS.trigger('client-move', { x: 1 });
  const { data, metadata } = await got;
  assert.deepEqual(data, { x: 1 });
  assert.equal(metadata.user_id, '10');
});

test('client events on a public channel are rejected', opts, async (t) => {
  const b = h.backend();
  const name = h.uniq('public-');
  const sender = h.client(t);
  const receiver = h.client(t);
  const chS = await h.subscribe(sender, name);
  const chR = await h.subscribe(receiver, name);
  const received = h.recorder(chR);

  const rejected = Promise.race([
    h.waitEvent(chS, 'pusher:error', 'channel error'),
    h.waitEvent(sender.connection, 'error', 'connection error'),
  ]);
  chS.trigger('client-nope', { x: 1 });
  await rejected;
  assert.equal(sender.connection.state, 'connected', 'a rejected client event must not close the socket');

  const barrier = h.waitEvent(chR, 'barrier');
  await b.trigger(name, 'barrier', {});
  await barrier;
  assert.equal(received.some((e) => e.event === 'client-nope'), false);
});

test('a subscribe-only grant cannot send client events; pusher-js passes it unchanged', opts, async (t) => {
  const b = h.backend();
  const name = h.uniq('private-ro-');
  const sender = h.client(t, { subscribeOnly: true });
  const receiver = h.client(t);
  const chS = await h.subscribe(sender, name);
  const chR = await h.subscribe(receiver, name);
  const received = h.recorder(chR);

  const rejected = h.waitEvent(chS, 'pusher:error', 'channel error');
  chS.trigger('client-chat', { x: 1 });
  assert.equal((await rejected).data.code, 4301);
  assert.equal(sender.connection.state, 'connected', 'a refused client event must not close the socket');

  // The receiver's plain grant still sends; and the refused event never arrived.
  const got = h.waitEvent(chS, 'client-chat');
  chR.trigger('client-chat', { y: 2 });
  assert.deepEqual((await got).data, { y: 2 });
  const barrier = h.waitEvent(chR, 'barrier');
  await b.trigger(name, 'barrier', {});
  await barrier;
  assert.equal(received.some((e) => e.event === 'client-chat'), false);
});
