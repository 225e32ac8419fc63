// The operator console. Every figure and action goes through
// /console/api/{Service}/{Method}, a JSON gateway onto pushercm's own gRPC
// API, with the operator's service token as the bearer token.
(function () {
  'use strict';

  // HISTOGRAMS maps each latency chart to the /metrics histogram it reads
  // (Prometheus names of the OpenTelemetry instruments). Renaming a metric
  // is a change of this one table.
  var HISTOGRAMS = {
    publish: 'pushercm_delivery_latency_seconds',       // the publish call
    delivery: 'pushercm_socket_write_latency_seconds'   // publish to socket write
  };
  var POLL_MS = 2000;
  var HISTORY = 150; // 5 minutes of 2 s samples
  var P99_WINDOW = 15; // samples (30 s) each p99 figure covers

  // EVENT_TYPES are the WatchConnectionEvents types the log asks for: the
  // lifecycle ones and the message ones (published, client event, webhook).
  var EVENT_TYPES = ['CONNECTED', 'DISCONNECTED', 'SUBSCRIBED', 'UNSUBSCRIBED', 'MEMBER_ADDED',
    'MEMBER_REMOVED', 'CHANNEL_OCCUPIED', 'CHANNEL_VACATED', 'PUBLISHED', 'CLIENT_EVENT', 'WEBHOOK']
    .map(function (t) { return 'CONNECTION_EVENT_TYPE_' + t; });

  var $ = function (id) { return document.getElementById(id); };
  var token = sessionStorage.getItem('pushercm-console-token') || '';
  var pollTimer = null;
  var watchAbort = null;
  var selectedChannel = '';
  // Figures are kept per scope: '' is the whole cluster (or the one node
  // without Redis), otherwise a node id (ListNodes). The latency figures
  // come from this node's /metrics, so they have a scope of their own.
  var figures = {};
  var latency = { series: {}, hists: {} };
  var scope = '';
  // cluster is what the last ListNodes said.
  var cluster = { on: false, self: '', nodes: [] };

  function fig(key) {
    return figures[key] || (figures[key] = { series: {}, last: null, hists: {}, text: {} });
  }

  function text(el, s) { el.textContent = s; }

  function show(el, msg) {
    if (!msg) { el.hidden = true; text(el, ''); return; }
    el.hidden = false;
    text(el, msg);
  }

  // ApiError carries the gateway's {error: {code, reason, message}}.
  function ApiError(status, body) {
    this.status = status;
    this.code = (body && body.code) || 'HTTP_' + status;
    this.reason = body && body.reason;
    this.message = (body && body.message) || 'request failed';
  }

  function describe(err) {
    if (!(err instanceof ApiError)) { return 'Cannot reach pushercm: ' + err.message; }
    switch (err.code) {
      case 'UNAUTHENTICATED': return 'The token was refused (' + (err.reason || err.code) + '): ' + err.message + '.';
      case 'PERMISSION_DENIED': return 'The token lacks the scope for this (' + (err.reason || err.code) + '): ' + err.message + '.';
      default: return err.code + (err.reason ? ' / ' + err.reason : '') + ': ' + err.message;
    }
  }

  async function call(method, body) {
    var res = await fetch('api/' + method, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
      body: JSON.stringify(body || {})
    });
    var data = await res.json().catch(function () { return {}; });
    if (!res.ok) { throw new ApiError(res.status, data.error); }
    return data;
  }

  // --- charts -------------------------------------------------------------

  function push(node, key, v) {
    var s = node.series[key] || (node.series[key] = []);
    s.push(v);
    if (s.length > HISTORY) { s.shift(); }
    draw(key, s);
  }

  function draw(key, s) {
    var svg = $('chart-' + key);
    if (!svg) { return; }
    var vals = s.map(function (x) { return x == null ? 0 : x; });
    var max = Math.max.apply(null, vals.concat([1e-9]));
    // The line fills the width as samples arrive, then scrolls.
    var step = 150 / Math.max(vals.length - 1, 1);
    var pts = vals.map(function (x, i) {
      return (i * step).toFixed(1) + ',' + (38 - (x / max) * 36).toFixed(1);
    }).join(' ');
    svg.innerHTML = '<polyline points="' + pts + '"></polyline>';
  }

  function fmtDur(sec) {
    if (sec == null) { return '—'; }
    if (sec < 0.001) { return (sec * 1e6).toFixed(0) + ' µs'; }
    if (sec < 1) { return (sec * 1000).toFixed(sec < 0.01 ? 2 : 0) + ' ms'; }
    return sec.toFixed(2) + ' s';
  }

  // --- /metrics histograms ---------------------------------------------------

  function parseHistogram(textBody, name) {
    var buckets = {};
    var re = new RegExp('^' + name + '_bucket\\{[^}]*le="([^"]+)"[^}]*\\} ([0-9.e+-]+)', 'gm');
    var m;
    while ((m = re.exec(textBody)) !== null) {
      var le = m[1] === '+Inf' ? Infinity : parseFloat(m[1]);
      buckets[le] = (buckets[le] || 0) + parseFloat(m[2]);
    }
    return buckets;
  }

  // p99 of the observations between two cumulative bucket snapshots: the
  // upper bound of the bucket the 99th percentile falls in.
  function p99(prev, cur) {
    var les = Object.keys(cur).map(Number).sort(function (a, b) { return a - b; });
    if (!les.length) { return null; }
    var total = cur[Infinity] - ((prev && prev[Infinity]) || 0);
    if (!(total > 0)) { return null; }
    for (var i = 0; i < les.length; i++) {
      var d = cur[les[i]] - ((prev && prev[les[i]]) || 0);
      if (d >= 0.99 * total) { return isFinite(les[i]) ? les[i] : les[i - 1]; }
    }
    return null;
  }

  async function pollLatency(node) {
    var res = await fetch('/metrics');
    if (!res.ok) { return; }
    var body = await res.text();
    Object.keys(HISTOGRAMS).forEach(function (key) {
      var cur = parseHistogram(body, HISTOGRAMS[key]);
      // p99 over the last P99_WINDOW samples: steadier than one interval.
      var past = node.hists[key] || (node.hists[key] = []);
      var v = p99(past[0], cur);
      past.push(cur);
      if (past.length > P99_WINDOW) { past.shift(); }
      text($('stat-p99-' + key), v == null ? 'idle' : fmtDur(v));
      push(node, 'p99-' + key, v);
    });
  }

  // --- polling ----------------------------------------------------------------

  function renderHealth(h) {
    var st = (h.status || '').replace('HEALTH_STATUS_', '').toLowerCase() || 'unknown';
    var b = $('health-status');
    b.dataset.status = st;
    text(b, st);
    text($('health-checked'), h.checkedAt ? 'checked ' + new Date(h.checkedAt).toLocaleTimeString() : '');
    var ul = $('health-reasons');
    ul.replaceChildren();
    (h.reasons && h.reasons.length ? h.reasons : ['All thresholds are met.']).forEach(function (r) {
      var li = document.createElement('li');
      li.textContent = r;
      ul.appendChild(li);
    });
  }

  function renderChannels(list) {
    var tb = $('channels');
    tb.replaceChildren();
    if (!list.length) {
      tb.innerHTML = '<tr class="empty"><td colspan="4">No occupied channels.</td></tr>';
      return;
    }
    list.forEach(function (c) {
      var tr = document.createElement('tr');
      tr.dataset.channel = c.name;
      var presence = c.name.indexOf('presence-') === 0;
      tr.innerHTML = '<td><code></code></td><td class="num subs"></td><td class="num users"></td><td></td>';
      text(tr.children[0].firstChild, c.name);
      text(tr.children[1], String(c.subscriptionCount || 0));
      text(tr.children[2], presence ? String(c.userCount || 0) : '');
      if (presence) {
        var b = document.createElement('button');
        b.type = 'button';
        b.className = 'members';
        b.textContent = 'Members';
        b.addEventListener('click', function () { selectedChannel = c.name; loadMembers(); });
        tr.children[3].appendChild(b);
      }
      tb.appendChild(tr);
    });
  }

  async function loadMembers() {
    if (!selectedChannel) { return; }
    $('members-box').hidden = false;
    text($('members-of'), selectedChannel);
    var ul = $('members');
    try {
      var r = await call('ConnectionService/ListPresenceMembers', { channel: selectedChannel });
      ul.replaceChildren();
      (r.members || []).forEach(function (m) {
        var li = document.createElement('li');
        li.dataset.user = m.userId;
        var name = m.userInfo && m.userInfo.name;
        li.textContent = m.userId + (name ? ' — ' + name : '');
        ul.appendChild(li);
      });
      if (!ul.children.length) { ul.innerHTML = '<li class="muted">No members.</li>'; }
    } catch (e) {
      ul.replaceChildren();
      var li = document.createElement('li');
      li.className = 'error';
      li.textContent = describe(e);
      ul.appendChild(li);
    }
  }

  function renderConnections(list) {
    var tb = $('connections');
    tb.replaceChildren();
    if (!list.length) {
      tb.innerHTML = '<tr class="empty"><td colspan="4">No connections.</td></tr>';
      return;
    }
    list.forEach(function (c) {
      var tr = document.createElement('tr');
      tr.dataset.socket = c.socketId;
      tr.dataset.user = c.userId || '';
      tr.innerHTML = '<td><code></code></td><td></td><td></td><td></td>';
      text(tr.children[0].firstChild, c.socketId);
      text(tr.children[1], c.userId || '—');
      text(tr.children[2], (c.channels || []).join(', '));
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'danger disconnect';
      b.textContent = 'Disconnect';
      b.addEventListener('click', function () { disconnect(c.socketId); });
      tr.children[3].appendChild(b);
      tb.appendChild(tr);
    });
  }

  // moreNote says when a list shows only its first page.
  function moreNote(id, nextPageToken, cols) {
    if (!nextPageToken) { return; }
    var tr = document.createElement('tr');
    tr.className = 'empty';
    tr.innerHTML = '<td colspan="' + cols + '">Showing the first 200; list the rest with grpcurl and page_token.</td>';
    $(id).appendChild(tr);
  }

  // --- nodes ------------------------------------------------------------------

  function ago(ts, now) {
    if (!ts) { return ''; }
    var s = Math.max(0, (now - new Date(ts).getTime()) / 1000);
    return s < 60 ? s.toFixed(1) + ' s ago' : Math.round(s / 60) + ' min ago';
  }

  // renderNodes shows the cluster's nodes; the panel is there when more
  // than one node answers or the node is in cluster mode (Redis set).
  function renderNodes(list, self, redisConfigured) {
    cluster.on = list.length > 1 || !!redisConfigured;
    cluster.self = self;
    cluster.nodes = list;
    document.body.dataset.cluster = cluster.on ? '1' : '';
    text($('node-name'), self || 'this process');
    text($('node-mode'), cluster.on ? '· cluster of ' + list.length + ' node' + (list.length === 1 ? '' : 's') : '(single node)');
    $('nodes-card').hidden = !cluster.on;
    var labels = document.querySelectorAll('.scope-label');
    Array.prototype.forEach.call(labels, function (el) {
      text(el, !cluster.on ? '' : scope ? '(node ' + scope + ')' : '(cluster-wide)');
      el.parentNode.title = el.parentNode.textContent; // a narrow label is cut short
    });
    if (!cluster.on) { return; }
    var conns = list.reduce(function (n, x) { return n + Number(x.connections || 0); }, 0);
    text($('nodes-summary'), list.length + ' live; ' + conns + ' connection' + (conns === 1 ? '' : 's') + ' at their last heartbeats');
    var sel = $('scope');
    var want = [''].concat(list.map(function (n) { return n.id; }));
    var have = Array.prototype.map.call(sel.options, function (o) { return o.value; });
    if (want.join('\n') !== have.join('\n')) {
      sel.replaceChildren();
      want.forEach(function (id) {
        var o = document.createElement('option');
        o.value = id;
        o.textContent = id === '' ? 'the whole cluster' : 'node ' + id + (id === self ? ' (this one)' : '');
        sel.appendChild(o);
      });
    }
    sel.value = scope;
    var now = Date.now();
    var tb = $('nodes');
    tb.replaceChildren();
    list.forEach(function (n) {
      var tr = document.createElement('tr');
      tr.dataset.node = n.id;
      tr.dataset.self = n.id === self ? '1' : '';
      tr.dataset.selected = n.id === scope ? '1' : '';
      tr.innerHTML = '<td><code></code></td><td></td><td></td><td class="num conns"></td><td></td><td class="num beat"></td>';
      text(tr.children[0].firstChild, n.id);
      if (n.id === self) {
        var b = document.createElement('span');
        b.className = 'self';
        b.textContent = 'serves this console';
        tr.children[0].appendChild(b);
      }
      [['gRPC', n.grpcAddr], ['HTTP', n.httpAddr], ['ops', n.opsAddr]].forEach(function (a) {
        if (!a[1]) { return; }
        var span = document.createElement('span');
        span.className = 'addr muted';
        span.textContent = a[0] + ' ' + a[1];
        tr.children[1].appendChild(span);
      });
      text(tr.children[2], n.version || '—');
      text(tr.children[3], String(n.connections || 0));
      text(tr.children[4], n.startedAt ? new Date(n.startedAt).toLocaleTimeString() : '—');
      text(tr.children[5], n.lastHeartbeatAt ? new Date(n.lastHeartbeatAt).toLocaleTimeString() + ' (' + ago(n.lastHeartbeatAt, now) + ')' : '—');
      tb.appendChild(tr);
    });
  }

  // setScope shows the figures of the whole cluster ('') or of one node,
  // with the history kept for it while this page has been open.
  function setScope(id) {
    scope = id;
    var f = fig(scope);
    ['connections', 'channels', 'mps'].forEach(function (key) {
      draw(key, f.series[key] || []);
      text($('stat-' + key), f.text[key] || '—');
    });
    renderNodes(cluster.nodes, cluster.self, cluster.on);
    poll();
  }

  function stat(node, key, v, shown) {
    node.text[key] = shown;
    text($('stat-' + key), shown);
    push(node, key, v);
  }

  async function poll() {
    try {
      var ln = await call('ConnectionService/ListNodes');
      var list = ln.nodes || [];
      // A node that left: back to the whole cluster.
      if (scope && !list.some(function (n) { return n.id === scope; })) {
        scope = '';
      }
      var asked = scope;
      var node = fig(asked);
      var r = await Promise.all([
        call('ConnectionService/GetHealthStatus', { nodeId: asked }),
        call('ConnectionService/GetMetrics', { nodeId: asked }),
        call('ConnectionService/ListChannels', { pageSize: 200 }),
        call('ConnectionService/ListConnections', { pageSize: 200 })
      ]);
      if (asked !== scope) { return; } // the operator chose another scope meanwhile
      show($('poll-error'), '');
      renderNodes(list, ln.self || '', r[0].redis && r[0].redis.configured);
      renderHealth(r[0]);
      text($('health-node'), r[0].nodeId || cluster.self);
      var m = r[1];
      var now = Date.now();
      var active = Number(m.activeConnections);
      stat(node, 'connections', active, String(active));
      var channels = Number(m.occupiedChannels);
      stat(node, 'channels', channels, String(channels));
      var delivered = Number(m.messagesDelivered);
      if (node.last) {
        var mps = Math.max(0, (delivered - node.last.delivered) / ((now - node.last.at) / 1000));
        stat(node, 'mps', mps, mps.toFixed(mps < 10 ? 1 : 0));
      }
      node.last = { at: now, delivered: delivered };
      node.samples = (node.samples || 0) + 1;
      document.body.dataset.samples = String(node.samples);
      document.body.dataset.scope = asked;
      renderChannels(r[2].channels || []);
      renderConnections(r[3].connections || []);
      moreNote('channels', r[2].nextPageToken, 4);
      moreNote('connections', r[3].nextPageToken, 4);
      if (selectedChannel) { loadMembers(); }
      await pollLatency(latency);
    } catch (e) {
      show($('poll-error'), describe(e));
      if (e instanceof ApiError && (e.code === 'UNAUTHENTICATED')) { logout(describe(e)); }
    }
  }

  // --- event log -------------------------------------------------------------

  function shortType(t) { return (t || '').replace('CONNECTION_EVENT_TYPE_', '').toLowerCase(); }

  function applyFilter(li) {
    var f = $('event-filter').value.trim();
    li.hidden = f !== '' && (li.dataset.channel || '').indexOf(f) === -1;
  }

  function addEvent(e) {
    var type = shortType(e.type);
    var li = document.createElement('li');
    li.dataset.type = type;
    li.dataset.channel = e.channel || '';
    if (e.eventName) { li.dataset.event = e.eventName; }
    if (e.nodeId) { li.dataset.node = e.nodeId; }
    var parts = [];
    if (e.channel) { parts.push('channel=' + e.channel); }
    if (e.eventName) { parts.push('event=' + e.eventName); }
    if (type === 'published') { parts.push('delivered_to=' + e.deliveredTo); }
    if (e.socketId) { parts.push('socket=' + e.socketId); }
    if (e.userId) { parts.push('user=' + e.userId); }
    if (e.code) { parts.push('code=' + e.code); }
    if (e.reason) { parts.push('reason=' + e.reason); }
    li.innerHTML = '<span class="t"></span> <span class="n"></span> <span class="k"></span> <span class="d"></span>';
    text(li.children[0], new Date(e.time || Date.now()).toLocaleTimeString());
    // The node the event happened on (cluster mode only).
    text(li.children[1], e.nodeId || '');
    if (e.nodeId) { li.children[1].title = 'node ' + e.nodeId; }
    text(li.children[2], type.replace('_', ' '));
    text(li.children[3], parts.join(' '));
    applyFilter(li);
    var log = $('event-log');
    log.insertBefore(li, log.firstChild);
    while (log.children.length > 500) { log.removeChild(log.lastChild); }
  }

  async function watch() {
    if (watchAbort) { watchAbort.abort(); }
    var ctl = new AbortController();
    watchAbort = ctl;
    text($('watch-state'), 'Connecting to the event stream…');
    try {
      var res = await fetch('api/ConnectionService/WatchConnectionEvents', {
        method: 'POST', signal: ctl.signal,
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
        body: JSON.stringify({ types: EVENT_TYPES })
      });
      if (!res.ok) {
        var body = await res.json().catch(function () { return {}; });
        throw new ApiError(res.status, body.error);
      }
      text($('watch-state'), 'Live');
      $('watch-state').dataset.live = '1';
      var reader = res.body.getReader();
      var dec = new TextDecoder();
      var buf = '';
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) { break; }
        buf += dec.decode(chunk.value, { stream: true });
        var nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          var line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) { continue; }
          var msg = JSON.parse(line);
          if (msg.error) { throw new ApiError(0, msg.error); }
          addEvent(msg.event);
        }
      }
      throw new Error('the event stream ended');
    } catch (e) {
      if (ctl.signal.aborted) { return; }
      $('watch-state').dataset.live = '';
      text($('watch-state'), 'Event stream lost (' + describe(e) + '); retrying in 2 s');
      setTimeout(function () { if (watchAbort === ctl && token) { watch(); } }, 2000);
    }
  }

  // --- actions ------------------------------------------------------------------

  async function disconnect(socketId) {
    var code = Number($('disconnect-code').value);
    try {
      await call('ConnectionService/DisconnectConnection', { socketId: socketId, code: code, reason: 'disconnected from the operator console' });
      text($('action-result'), 'Disconnected socket ' + socketId + ' (code ' + code + ').');
      poll();
    } catch (e) {
      text($('action-result'), describe(e));
    }
  }

  async function terminate(ev) {
    ev.preventDefault();
    var user = $('terminate-user').value.trim();
    if (!user) { return; }
    try {
      var r = await call('ConnectionService/TerminateUserConnections', { userId: user });
      text($('action-result'), 'Closed ' + (r.closedConnections || 0) + ' connection(s) of user ' + user + '.');
      poll();
    } catch (e) {
      text($('action-result'), describe(e));
    }
  }

  async function send(ev) {
    ev.preventDefault();
    var data = $('send-data').value;
    try { JSON.parse(data); } catch (e) { text($('send-result'), 'Data must be JSON: ' + e.message); return; }
    try {
      var r = await call('BroadcastService/SendEvent', {
        event: { channels: [$('send-channel').value.trim()], name: $('send-event').value.trim(), data: data }
      });
      text($('send-result'), 'Sent: event ' + r.eventId + ' delivered to ' + (r.deliveredTo || 0) + ' socket(s).');
    } catch (e) {
      text($('send-result'), describe(e));
    }
  }

  // --- login ----------------------------------------------------------------------

  function logout(msg) {
    token = '';
    sessionStorage.removeItem('pushercm-console-token');
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    if (watchAbort) { watchAbort.abort(); watchAbort = null; }
    $('dash').hidden = true;
    $('token-clear').hidden = true;
    $('login').classList.remove('signed-in');
    show($('token-error'), msg || '');
  }

  async function login(t) {
    token = t;
    show($('token-error'), '');
    try {
      // A read the token must be allowed to make: refusals show here.
      await call('ConnectionService/GetMetrics');
    } catch (e) {
      logout(describe(e));
      return;
    }
    sessionStorage.setItem('pushercm-console-token', token);
    $('dash').hidden = false;
    $('token-clear').hidden = false;
    $('login').classList.add('signed-in');
    await poll();
    pollTimer = setInterval(poll, POLL_MS);
    watch();
  }

  $('token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('token').value.trim().replace(/^Bearer\s+/i, '');
    if (!t) { show($('token-error'), 'Paste a service token first.'); return; }
    login(t);
  });
  $('token-clear').addEventListener('click', function () { $('token').value = ''; logout(''); });
  $('terminate-form').addEventListener('submit', terminate);
  $('scope').addEventListener('change', function () { setScope($('scope').value); });
  $('send-form').addEventListener('submit', send);
  $('event-filter').addEventListener('input', function () {
    Array.prototype.forEach.call($('event-log').children, applyFilter);
  });
  document.body.dataset.ready = '1';
  if (token) { login(token); }
})();
