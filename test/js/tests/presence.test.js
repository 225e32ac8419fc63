'use strict';
// Presence channels: members, joins and leaves, and one user on several connections.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const opts = { timeout: h.TEST_TIMEOUT_MS };

const member = (id, name) => ({ user_id: id, user_info: { id, name } });

test('presence: subscriber sees itself as a member', opts, async (t) => {
  const c = h.client(t, { presence: member('1', 'John') });
  const name = h.uniq('presence-');
  const ch = await h.subscribe(c, name);
  assert.equal(ch.members.count, 1);
  assert.equal(ch.members.me.id, '1');
  assert.deepEqual(ch.members.me.info, { id: '1', name: 'John' });

  const users = await h.getJSON(h.backend(), `/channels/${name}/users`);
  assert.deepEqual(users, { users: [{ id: '1' }] });
});

test('presence: joins and leaves are seen by the other member', opts, async (t) => {
  const name = h.uniq('presence-');
  const john = h.client(t, { presence: member('1', 'John') });
  const chJohn = await h.subscribe(john, name);

  const added = h.waitEvent(chJohn, 'pusher:member_added', 'member_added');
  const alice = h.client(t, { presence: member('2', 'Alice') });
  const chAlice = await h.subscribe(alice, name);
  const { data: m } = await added;
  assert.equal(m.id, '2');
  assert.deepEqual(m.info, { id: '2', name: 'Alice' });
  assert.equal(chJohn.members.count, 2);
  assert.equal(chAlice.members.count, 2);

  const removed = h.waitEvent(chJohn, 'pusher:member_removed', 'member_removed');
  alice.disconnect();
  assert.equal((await removed).data.id, '2');
  assert.equal(chJohn.members.count, 1);
});

test('presence: the same user twice is one member', opts, async (t) => {
  const b = h.backend();
  const name = h.uniq('presence-');
  const first = h.client(t, { presence: member('1', 'John') });
  await h.subscribe(first, name);
  const watcher = h.client(t, { presence: member('2', 'Alice') });
  const chW = await h.subscribe(watcher, name);
  const events = h.recorder(chW);

  const second = h.client(t, { presence: member('1', 'John') });
  const chSecond = await h.subscribe(second, name);
  assert.equal(chSecond.members.count, 2, 'user 1 counted once');

  // Barrier: a backend event sent after the second join arrives after any member_added.
  let barrier = h.waitEvent(chW, 'barrier-1');
  await b.trigger(name, 'barrier-1', {});
  await barrier;
  assert.equal(events.filter((e) => e.event === 'pusher:member_added').length, 0, 'no member_added for a known user');
  const users = await h.getJSON(b, `/channels/${name}/users`);
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['1', '2']);
  assert.deepEqual(await h.channelState(b, name, 'user_count'), { occupied: true, user_count: 2 });

  // One of user 1's connections leaves: no member_removed yet.
  second.disconnect();
  await h.waitUntil(async () => (await h.channelState(b, name)).subscription_count === 2, 'second connection gone');
  barrier = h.waitEvent(chW, 'barrier-2');
  await b.trigger(name, 'barrier-2', {});
  await barrier;
  assert.equal(events.filter((e) => e.event === 'pusher:member_removed').length, 0, 'user 1 still has a connection');

  // The last connection leaves: now member_removed.
  const removed = h.waitEvent(chW, 'pusher:member_removed', 'member_removed');
  first.disconnect();
  assert.equal((await removed).data.id, '1');
  assert.equal(chW.members.count, 1);
});

test('presence: numeric user_id is accepted and reported as a string', opts, async (t) => {
  const c = h.client(t, { presence: { user_id: 7, user_info: { n: 1 } } });
  const name = h.uniq('presence-');
  const ch = await h.subscribe(c, name);
  assert.equal(ch.members.count, 1);
  const users = await h.getJSON(h.backend(), `/channels/${name}/users`);
  assert.deepEqual(users, { users: [{ id: '7' }] });
});
