'use strict';
// Webhooks sent by the server, read back from the runner's receiver. Each request is
// verified twice: by pusher-http-go on receipt (go_valid) and here by the npm pusher
// SDK's WebHook.isValid(), which also insists on the exact Content-Type.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const LOG = process.env.PUSHERCM_TEST_WEBHOOK_LOG;
const opts = { timeout: h.TEST_TIMEOUT_MS, skip: LOG ? false : 'PUSHERCM_TEST_WEBHOOK_LOG is not set' };

async function received() {
  const res = await fetch(LOG);
  assert.equal(res.status, 200);
  const { webhooks } = await res.json();
  const b = h.backend();
  return (webhooks || []).map((w) => {
    assert.ok(w.go_valid, `pusher-http-go rejected a webhook: ${w.go_error}`);
    assert.equal(w.headers['content-type'], 'application/json');
    const hook = b.webhook({ headers: w.headers, rawBody: w.body });
    assert.ok(hook.isValid(), `npm pusher rejected webhook ${w.body}`);
    assert.ok(hook.getTime() instanceof Date && !Number.isNaN(hook.getTime().getTime()));
    return hook.getEvents();
  }).flat();
}

async function eventsFor(channel) {
  return (await received()).filter((e) => e.channel === channel);
}

function waitEvents(channel, pred, what) {
  return h.waitUntil(async () => {
    const evs = await eventsFor(channel);
    return pred(evs) ? evs : false;
  }, what);
}

const names = (evs) => evs.map((e) => e.name);

test('webhooks: channel_occupied then channel_vacated', opts, async (t) => {
  const c = h.client(t);
  const name = h.uniq('public-');
  await h.subscribe(c, name);
  await waitEvents(name, (evs) => evs.length >= 1, 'channel_occupied');
  c.unsubscribe(name);
  const evs = await waitEvents(name, (evs) => evs.length >= 2, 'channel_vacated');
  assert.deepEqual(evs, [{ name: 'channel_occupied', channel: name }, { name: 'channel_vacated', channel: name }]);
});

test('webhooks: member_added and member_removed with string user ids', opts, async (t) => {
  const c = h.client(t, { presence: { user_id: 42, user_info: { n: 'x' } } });
  const name = h.uniq('presence-');
  await h.subscribe(c, name);
  await waitEvents(name, (evs) => names(evs).includes('member_added'), 'member_added');
  c.disconnect();
  // Webhook requests are sent by several workers, so member_removed and
  // channel_vacated (both after the 3 s delay) may arrive in either order.
  const evs = await waitEvents(name, (evs) => names(evs).includes('member_removed') && names(evs).includes('channel_vacated'), 'member_removed and channel_vacated');
  const added = evs.find((e) => e.name === 'member_added');
  const removed = evs.find((e) => e.name === 'member_removed');
  assert.deepEqual(added, { name: 'member_added', channel: name, user_id: '42' });
  assert.deepEqual(removed, { name: 'member_removed', channel: name, user_id: '42' });
  assert.deepEqual(names(evs).sort(), ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed']);
});

test('webhooks: client_event carries event, string data and socket_id', opts, async (t) => {
  const name = h.uniq('presence-');
  const sender = h.client(t, { presence: { user_id: 'u1' } });
  const receiver = h.client(t, { presence: { user_id: 'u2' } });
  const chS = await h.subscribe(sender, name);
  const chR = await h.subscribe(receiver, name);
  const got = h.waitEvent(chR, 'client-ping');
  chS.trigger('client-ping', { a: 1 });
  await got;
  const evs = await waitEvents(name, (evs) => names(evs).includes('client_event'), 'client_event');
  const ce = evs.find((e) => e.name === 'client_event');
  assert.equal(ce.event, 'client-ping');
  assert.equal(typeof ce.data, 'string');
  assert.deepEqual(JSON.parse(ce.data), { a: 1 });
  assert.equal(ce.socket_id, sender.connection.socket_id);
  assert.equal(ce.user_id, 'u1');
});

test('webhooks: cache_miss', opts, async (t) => {
  const c = h.client(t);
  const name = h.uniq('cache-');
  const ch = c.subscribe(name);
  await h.waitEvent(ch, 'pusher:cache_miss', 'cache miss');
  await waitEvents(name, (evs) => names(evs).includes('cache_miss'), 'cache_miss webhook');
});

test('webhooks: a quick leave and rejoin sends neither vacated nor occupied again', opts, async (t) => {
  const c = h.client(t, { presence: { user_id: '9' } });
  const name = h.uniq('presence-');
  await h.subscribe(c, name);
  await waitEvents(name, (evs) => evs.length >= 2, 'channel_occupied and member_added');
  // Back to back on one socket: the server sees the rejoin well inside the leave delay.
  c.unsubscribe(name);
  await h.subscribe(c, name);
  // Leave for real; its webhooks arrive only after the delay, and so would the first
  // leave's (released earlier) had it not been cancelled.
  c.unsubscribe(name);
  // Webhook requests are sent by several workers, so member_removed and channel_vacated
  // may arrive in either order: wait for both.
  await waitEvents(name, (evs) => names(evs).includes('member_removed') && names(evs).includes('channel_vacated'), 'final member_removed and channel_vacated');
  // An uncancelled first leave would have been released before the final one; give any
  // such straggler time to land before asserting that there is exactly one of each.
  await new Promise((r) => setTimeout(r, 500));
  const evs = await eventsFor(name);
  assert.deepEqual(names(evs).sort(), ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed']);
});
