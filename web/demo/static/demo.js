// The Mile Quest demo page. Plain browser JavaScript, no build step. Every
// state change and error is written on the page in words: the page must be
// usable with the developer console closed.
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var cfg = null;      // GET api/config
  var pusher = null;   // the live connection
  var me = null;       // {id, name}
  var team = null;     // team id
  var connectedOnce = false;

  var stateWords = {
    initialized: 'Not connected',
    connecting: 'Connecting…',
    connected: 'Connected',
    unavailable: 'Connection unavailable — retrying',
    failed: 'This browser cannot connect (WebSockets unsupported)',
    disconnected: 'Disconnected'
  };

  function text(el, s) { el.textContent = s; }

  function showError(msg) {
    var el = $('error');
    if (!msg) { el.hidden = true; text(el, ''); return; }
    el.hidden = false;
    text(el, msg);
  }

  function addItem(listId, msg, attrs) {
    var ul = $(listId);
    var empty = ul.querySelector('.empty');
    if (empty) { empty.remove(); }
    var li = document.createElement('li');
    li.textContent = new Date().toLocaleTimeString() + ' · ' + msg;
    Object.keys(attrs || {}).forEach(function (k) { li.dataset[k] = attrs[k]; });
    ul.insertBefore(li, ul.firstChild);
    return li;
  }

  function logConn(msg) { addItem('connlog', msg); }

  function colour(id) {
    var h = 0;
    for (var i = 0; i < id.length; i++) { h = (h * 31 + id.charCodeAt(i)) % 360; }
    return 'hsl(' + h + ',55%,45%)';
  }

  function initials(name) {
    return name.split(/\s+/).map(function (p) { return p.charAt(0); }).join('').slice(0, 2).toUpperCase();
  }

  function displayName(info, id) {
    return (info && info.name) || id;
  }

  // --- presence avatars -------------------------------------------------

  function renderMemberCount() {
    var n = $('members').children.length;
    text($('member-count'), '(' + n + ' online)');
  }

  function addAvatar(id, info) {
    if ($('members').querySelector('[data-user="' + CSS.escape(id) + '"]')) { return; }
    var name = displayName(info, id);
    var div = document.createElement('div');
    div.className = 'avatar' + (id === me.id ? ' me' : '');
    div.dataset.user = id;
    var face = document.createElement('div');
    face.className = 'face';
    face.style.background = colour(id);
    face.textContent = initials(name);
    face.title = name;
    var label = document.createElement('span');
    label.className = 'name';
    label.textContent = id === me.id ? name + ' (you)' : name;
    div.appendChild(face);
    div.appendChild(label);
    if (id !== me.id) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'cheer';
      b.textContent = 'Cheer';
      b.addEventListener('click', function () { cheer(id, name); });
      div.appendChild(b);
    }
    $('members').appendChild(div);
    renderMemberCount();
  }

  function removeAvatar(id) {
    var el = $('members').querySelector('[data-user="' + CSS.escape(id) + '"]');
    if (el) { el.remove(); }
    renderMemberCount();
  }

  // --- cheers (client events) ------------------------------------------

  function cheer(toId, toName) {
    var ch = pusher && pusher.channel('presence-team-' + team);
    if (!ch || !ch.subscribed) { showError('Not on the team channel yet: cannot cheer.'); return; }
    var ok = ch.trigger('client-cheer', { from: me.id, fromName: me.name, to: toId });
    if (ok) {
      addItem('cheers', 'You cheered ' + toName + ' ★', { kind: 'sent', to: toId });
    } else {
      showError('The cheer was not sent: the connection is not open.');
    }
  }

  // --- connection -------------------------------------------------------

  function setState(state) {
    $('conn').dataset.state = state;
    var words = stateWords[state] || state;
    text($('state'), words);
    var sid = pusher && pusher.connection.socket_id;
    text($('socket'), state === 'connected' && sid ? 'socket ' + sid : '');
    $('socket').dataset.socket = state === 'connected' && sid ? sid : '';
  }

  function describeError(err) {
    var e = err && err.error;
    if (e && e.data && e.data.code) {
      return 'The server closed or refused the connection: ' + (e.data.message || 'error') + ' (code ' + e.data.code + ').';
    }
    if (e && e.type === 'WebSocketError') {
      return 'The WebSocket connection failed. Is pushercm running and reachable at ' + location.host + '?';
    }
    if (err && err.type === 'AuthError') {
      return 'Sign-in was refused: ' + (err.error || 'the token was not accepted') + '.';
    }
    return 'Connection error: ' + (e && e.type ? e.type : (err && err.type) || 'unknown') + '.';
  }

  function subscriptionError(channel, status) {
    var why = status && status.status ? ' (HTTP ' + status.status + (status.error ? ': ' + status.error : '') + ')' : '';
    showError('Could not join ' + channel + why + '. Your token may not allow this channel.');
  }

  function grpcLines() {
    var addr = cfg.grpcAddr;
    var h = '-H "authorization: Bearer $TOKEN"';
    $('grpcurl-activity').textContent =
      'go tool grpcurl -plaintext ' + h + " \\\n  -d '" + JSON.stringify({ event: { channels: ['presence-team-' + team], name: 'activity', json: { walker: me.name, miles: 3.2, note: 'Morning loop' } } }) + "' \\\n  " + addr + ' pushercm.v1.BroadcastService/SendEvent';
    $('grpcurl-notify').textContent =
      'go tool grpcurl -plaintext ' + h + " \\\n  -d '" + JSON.stringify({ user_id: me.id, name: 'notification', json: { text: 'You reached 100 miles!' } }) + "' \\\n  " + addr + ' pushercm.v1.BroadcastService/SendToUser';
    $('grpcurl-secret').textContent =
      'go tool grpcurl -plaintext ' + h + " \\\n  -d '" + JSON.stringify({ event: { channels: ['private-encrypted-team-' + team], name: 'team-note', json: { text: 'Meet at the trailhead at 7' } } }) + "' \\\n  " + addr + ' pushercm.v1.BroadcastService/SendEvent';
  }

  function dataText(data) {
    if (data == null) { return ''; }
    if (typeof data === 'string') { return data; }
    if (data.text) { return data.text; }
    if (data.walker) { return data.walker + ' walked ' + (data.miles != null ? data.miles + ' miles' : '') + (data.note ? ' — ' + data.note : ''); }
    return JSON.stringify(data);
  }

  function connect(token) {
    var port = location.port ? Number(location.port) : (location.protocol === 'https:' ? 443 : 80);
    var auth = { Authorization: 'Bearer ' + token };
    pusher = new Pusher(cfg.key, {
      cluster: 'mt1', // pusher-js insists; wsHost decides where it connects
      wsHost: location.hostname,
      wsPort: port,
      wssPort: port,
      forceTLS: location.protocol === 'https:',
      enabledTransports: ['ws', 'wss'],
      disableStats: true,
      channelAuthorization: { endpoint: '/pusher/auth', transport: 'ajax', headers: auth },
      userAuthentication: { endpoint: '/pusher/user-auth', transport: 'ajax', headers: auth }
    });

    pusher.connection.bind('state_change', function (s) {
      setState(s.current);
      if (s.current === 'connected') {
        showError('');
        logConn((connectedOnce ? 'Reconnected' : 'Connected') + ' as socket ' + pusher.connection.socket_id);
        connectedOnce = true;
      } else {
        logConn('Connection ' + (stateWords[s.current] || s.current).toLowerCase());
      }
    });
    pusher.connection.bind('error', function (err) { showError(describeError(err)); });

    pusher.signin();
    pusher.user.bind('pusher:signin_success', function () { logConn('Signed in as ' + me.id); });
    pusher.user.bind('notification', function (data) {
      addItem('notifications', dataText(data), { kind: 'notification' });
    });

    var presenceName = 'presence-team-' + team;
    var presence = pusher.subscribe(presenceName);
    presence.bind('pusher:subscription_succeeded', function (members) {
      $('members').replaceChildren();
      members.each(function (m) { addAvatar(m.id, m.info); });
      logConn('Joined ' + presenceName);
    });
    presence.bind('pusher:subscription_error', function (st) { subscriptionError(presenceName, st); });
    presence.bind('pusher:member_added', function (m) {
      addAvatar(m.id, m.info);
      addItem('feed', displayName(m.info, m.id) + ' came online', { kind: 'presence' });
    });
    presence.bind('pusher:member_removed', function (m) {
      removeAvatar(m.id);
      addItem('feed', displayName(m.info, m.id) + ' went offline', { kind: 'presence' });
    });
    presence.bind('activity', function (data) {
      addItem('feed', dataText(data), { kind: 'activity' });
    });
    presence.bind('client-cheer', function (data, meta) {
      var from = (data && data.fromName) || (meta && meta.user_id) || 'A teammate';
      if (data && data.to === me.id) {
        addItem('cheers', from + ' cheered you! ★', { kind: 'received', from: (meta && meta.user_id) || '' });
      } else {
        addItem('cheers', from + ' cheered a teammate', { kind: 'seen' });
      }
    });

    var secretName = 'private-encrypted-team-' + team;
    var secret = pusher.subscribe(secretName);
    secret.bind('pusher:subscription_error', function (st) { subscriptionError(secretName, st); });
    secret.bind('team-note', function (data) {
      addItem('secrets', dataText(data), { kind: 'note' });
    });
  }

  function leave() {
    if (pusher) { pusher.disconnect(); pusher = null; }
    connectedOnce = false;
    setState('initialized');
    $('page').hidden = true;
    $('join').disabled = false;
    $('leave').disabled = true;
    $('user').disabled = false;
    $('team').disabled = false;
    $('members').replaceChildren();
  }

  async function join(ev) {
    ev.preventDefault();
    showError('');
    var userId = $('user').value;
    team = $('team').value;
    $('join').disabled = true;
    var res;
    try {
      res = await fetch('api/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: userId, team: team })
      });
    } catch (e) {
      showError('Could not reach pushercm to get a token: ' + e.message);
      $('join').disabled = false;
      return;
    }
    if (res.status === 404) {
      showError('This server does not run in dev mode, so it mints no demo tokens. Start it with `pushercm serve --dev` (or `make run`).');
      $('join').disabled = false;
      return;
    }
    if (!res.ok) {
      var body = await res.json().catch(function () { return {}; });
      showError('The token request failed: ' + (body.error || 'HTTP ' + res.status) + '.');
      $('join').disabled = false;
      return;
    }
    var tok = await res.json();
    me = { id: tok.user, name: tok.name };
    document.querySelectorAll('.me-id').forEach(function (el) { el.textContent = me.id; });
    text($('presence-name'), 'presence-team-' + team);
    text($('feed-channel'), 'presence-team-' + team);
    text($('secret-channel'), 'private-encrypted-team-' + team);
    grpcLines();
    $('page').hidden = false;
    $('leave').disabled = false;
    $('user').disabled = true;
    $('team').disabled = true;
    connect(tok.token);
  }

  async function init() {
    text($('pusher-version'), Pusher.VERSION || '');
    try {
      var res = await fetch('api/config');
      if (!res.ok) { throw new Error('HTTP ' + res.status); }
      cfg = await res.json();
    } catch (e) {
      showError('Could not load the demo settings from the server: ' + e.message);
      return;
    }
    cfg.users.forEach(function (u) { $('user').add(new Option(u.name, u.id)); });
    cfg.teams.forEach(function (t) { $('team').add(new Option(t.name, t.id)); });
    var q = new URLSearchParams(location.search);
    if (q.get('user')) { $('user').value = q.get('user'); }
    if (q.get('team')) { $('team').value = q.get('team'); }
    text($('signin-note'), cfg.dev
      ? 'Dev mode: the server mints a user token for the walker you pick (sub, teams and name claims).'
      : 'This server is not in dev mode: it mints no demo tokens.');
    $('join-form').addEventListener('submit', join);
    $('leave').addEventListener('click', leave);
    $('page').dataset.ready = '1';
    document.body.dataset.ready = '1';
  }

  init();
})();
