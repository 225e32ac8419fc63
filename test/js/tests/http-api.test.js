'use strict';
// The npm pusher SDK against the HTTP API.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const opts = { timeout: h.TEST_TIMEOUT_MS };

async function rejection(p) {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('request was accepted');
}

test('trigger with socket_id excludes that connection', opts, async (t) => {
  const b = h.backend();
  const name = h.uniq('public-');
  const excluded = h.client(t);
  const included = h.client(t);
  const chX = await h.subscribe(excluded, name);
  const chI = await h.subscribe(included, name);
  const xEvents = h.recorder(chX);

  const got = h.waitEvent(chI, 'only-others');
  await b.trigger(name, 'only-others', { n: 1 }, { socket_id: excluded.connection.socket_id });
  await got;
  const barrier = h.waitEvent(chX, 'barrier');
  await b.trigger(name, 'barrier', {});
  await barrier;
  assert.equal(xEvents.some((e) => e.event === 'only-others'), false);
});

test('trigger to several channels and triggerBatch', opts, async (t) => {
  const b = h.backend();
  const c = h.client(t);
  const one = await h.subscribe(c, h.uniq('public-'));
  const two = await h.subscribe(c, h.uniq('private-'));

  const got1 = h.waitEvent(one, 'multi');
  const got2 = h.waitEvent(two, 'multi');
  const res = await b.trigger([one.name, two.name], 'multi', 'plain string');
  assert.deepEqual(await res.json(), {});
  assert.equal((await got1).data, 'plain string');
  assert.equal((await got2).data, 'plain string');

  const b1 = h.waitEvent(one, 'batch-1');
  const b2 = h.waitEvent(two, 'batch-2');
  const bres = await b.triggerBatch([
    { channel: one.name, name: 'batch-1', data: { i: 1 } },
    { channel: two.name, name: 'batch-2', data: { i: 2 } },
  ]);
  assert.equal(bres.status, 200);
  assert.deepEqual(await bres.json(), {});
  assert.deepEqual((await b1).data, { i: 1 });
  assert.deepEqual((await b2).data, { i: 2 });
});

test('trigger with info returns channel attributes', opts, async (t) => {
  const b = h.backend();
  const c = h.client(t, { presence: { user_id: '5' } });
  const name = h.uniq('presence-');
  await h.subscribe(c, name);
  const res = await b.trigger(name, 'e', {}, { info: 'user_count,subscription_count' });
  assert.deepEqual(await res.json(), { channels: { [name]: { user_count: 1, subscription_count: 1 } } });
});

test('channel queries: channels, channel, users', opts, async (t) => {
  const b = h.backend();
  const presence = h.uniq('presence-');
  const pub = h.uniq('public-');
  const c1 = h.client(t, { presence: { user_id: '1' } });
  const c2 = h.client(t, { presence: { user_id: '2' } });
  await h.subscribe(c1, presence);
  await h.subscribe(c2, presence);
  await h.subscribe(c1, pub);

  const list = await h.getJSON(b, '/channels', { filter_by_prefix: presence, info: 'user_count' });
  assert.deepEqual(list, { channels: { [presence]: { user_count: 2 } } });
  const all = await h.getJSON(b, '/channels');
  assert.ok(all.channels[presence] && all.channels[pub], JSON.stringify(all));

  assert.deepEqual(await h.channelState(b, presence, 'user_count,subscription_count'),
    { occupied: true, user_count: 2, subscription_count: 2 });
  assert.deepEqual(await h.channelState(b, pub), { occupied: true, subscription_count: 1 });
  assert.deepEqual(await h.channelState(b, h.uniq('nobody-')), { occupied: false });

  const users = await h.getJSON(b, `/channels/${presence}/users`);
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['1', '2']);

  const err = await rejection(b.get({ path: `/channels/${pub}/users` }));
  assert.equal(err.status, 400);
});

test('rejections: bad secret, unknown app, oversized data', opts, async (t) => {
  const c = h.client(t);
  const name = h.uniq('public-');
  const ch = await h.subscribe(c, name);
  const events = h.recorder(ch);

  const badSecret = await rejection(h.backend({ secret: 'not-the-secret' }).trigger(name, 'forged', {}));
  assert.equal(badSecret.status, 401);
  const body = JSON.parse(badSecret.body);
  assert.equal(body.code, 401);

  const unknownApp = await rejection(h.backend({ appId: '987654321' }).trigger(name, 'nowhere', {}));
  assert.equal(unknownApp.status, 404);

  const big = await rejection(h.backend().trigger(name, 'big', 'x'.repeat(10 * 1024 + 1)));
  assert.equal(big.status, 413);

  const barrier = h.waitEvent(ch, 'barrier');
  await h.backend().trigger(name, 'barrier', {});
  await barrier;
  assert.deepEqual(events.filter((e) => !e.event.startsWith('pusher')).map((e) => e.event), ['barrier']);
});

test('channel names with @ , ; = work end to end', opts, async (t) => {
  const b = h.backend();
  const name = h.uniq('presence-a@b,c;d=e-');
  const c = h.client(t, { presence: { user_id: 'odd' } });
  const ch = await h.subscribe(c, name);
  assert.deepEqual(await h.channelState(b, name, 'user_count'), { occupied: true, user_count: 1 });
  assert.deepEqual(await h.getJSON(b, `/channels/${name}/users`), { users: [{ id: 'odd' }] });
  const got = h.waitEvent(ch, 'odd-event');
  await b.trigger(name, 'odd-event', { ok: true });
  assert.deepEqual((await got).data, { ok: true });
});
