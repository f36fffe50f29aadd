// The status page's script, as text inlined into the page (no build step, no CDN). It polls
// /admin/keys and /admin/clients once a second, sends the admin token from sessionStorage when the API
// asked for one (401 shows the form), and redraws rows in place keyed by name, so keys and clients that
// appear, change state or go away are shown as they are now. Every value is set as text, never as HTML:
// client names come from request headers.
// Written as plain ES2020 without template literals, so it can live inside this template literal.

export const STATUS_PAGE_SCRIPT = `(function () {
  'use strict';
  var TOKEN_KEY = 'keypool.adminToken';
  var POLL_MS = 1000;
  var TICK_MS = 100;
  var STATES = { ok: 1, cooling: 1, unavailable: 1, disabled: 1 };
  var offset = 0;
  var pollTimer = 0;
  var waitingForToken = false;
  var num = new Intl.NumberFormat('en');
  var compact = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });

  function byId(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  function serverNow() { return Date.now() + offset; }
  function seconds(ms) {
    if (ms <= 0) return '0 s';
    if (ms < 10000) return (ms / 1000).toFixed(1) + ' s';
    if (ms < 120000) return Math.round(ms / 1000) + ' s';
    if (ms < 7200000) return Math.round(ms / 60000) + ' min';
    return Math.round(ms / 3600000) + ' h';
  }
  function ago(iso) {
    if (!iso) return '';
    return seconds(serverNow() - Date.parse(iso)) + ' ago';
  }

  function Unauthorized(message) { this.message = message; }
  function getJson(path) {
    var t = token();
    var headers = t ? { authorization: 'Bearer ' + t } : {};
    return fetch(path, { headers: headers, cache: 'no-store', credentials: 'omit' }).then(function (res) {
      if (res.status === 401) {
        return res.json().catch(function () { return null; }).then(function (body) {
          throw new Unauthorized(body && body.error ? body.error.message : 'The admin API needs a token.');
        });
      }
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.json();
    });
  }

  function setConn(text, kind) {
    var c = byId('conn');
    c.textContent = text;
    c.className = 'conn ' + kind;
  }
  function showLogin(message) {
    waitingForToken = true;
    byId('login').hidden = false;
    byId('login-msg').textContent = message;
    setConn('needs the admin token', 'bad');
  }

  function poll() {
    clearTimeout(pollTimer);
    Promise.all([getJson('keys'), getJson('clients')]).then(function (both) {
      offset = Date.parse(both[0].now) - Date.now();
      renderUpstreams(both[0].upstreams);
      renderClients(both[1].clients);
      byId('login').hidden = true;
      waitingForToken = false;
      setConn('live', 'ok');
      byId('updated').textContent = 'updated ' + new Date(serverNow()).toLocaleTimeString();
    }).catch(function (e) {
      if (e instanceof Unauthorized) showLogin(e.message);
      else setConn('no answer: ' + (e && e.message ? e.message : String(e)), 'bad');
    }).then(function () {
      if (!waitingForToken) pollTimer = setTimeout(poll, POLL_MS);
    });
  }

  // One section per upstream, one row per key, found again by name on every poll.
  function section(u) {
    var id = 'up:' + u.name;
    var s = null;
    var all = byId('upstreams').children;
    for (var i = 0; i < all.length; i++) if (all[i].dataset.upstream === u.name) s = all[i];
    if (!s) {
      s = el('section', 'upstream');
      s.dataset.upstream = u.name;
      s.id = id;
      var h = el('h2');
      h.appendChild(el('span', 'uname'));
      h.appendChild(el('span', 'usummary'));
      s.appendChild(h);
      var table = el('table', 'keys');
      var head = el('tr');
      ['Key', 'State', 'Cooldown', 'In flight', 'Req/min', '429/min', 'Requests', 'Tokens in / out', 'Headroom'].forEach(function (t) { head.appendChild(el('th', null, t)); });
      var thead = el('thead');
      thead.appendChild(head);
      table.appendChild(thead);
      table.appendChild(el('tbody'));
      s.appendChild(table);
      byId('upstreams').appendChild(s);
    }
    return s;
  }

  function renderUpstreams(upstreams) {
    var seen = {};
    upstreams.forEach(function (u) {
      seen[u.name] = true;
      var s = section(u);
      s.querySelector('.uname').textContent = u.name + ' ' + u.prefix;
      s.querySelector('.usummary').textContent = u.usable + ' of ' + u.size + ' keys usable, ' + u.waiting + ' waiting';
      renderKeys(s.querySelector('tbody'), u);
    });
    Array.prototype.slice.call(byId('upstreams').children).forEach(function (s) {
      if (!seen[s.dataset.upstream]) s.remove();
    });
  }

  function keyRow(tbody, id) {
    var rows = tbody.children;
    for (var i = 0; i < rows.length; i++) if (rows[i].dataset.key === id) return rows[i];
    var tr = el('tr');
    tr.dataset.key = id;
    ['key', 'state', 'cooldown', 'inflight num', 'rpm num', 'r429 num', 'requests num', 'tokens num', 'headroom'].forEach(function (c) { tr.appendChild(el('td', c)); });
    tbody.appendChild(tr);
    return tr;
  }

  function renderKeys(tbody, u) {
    var seen = {};
    u.keys.forEach(function (k, i) {
      var id = u.name + '/' + k.name;
      seen[id] = true;
      var tr = keyRow(tbody, id);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      var c = tr.children;
      c[0].replaceChildren(el('div', 'kname', k.name), el('div', 'kid', k.fingerprint + ' · ' + k.masked + (k.group ? ' · group ' + k.group : '')));
      var state = STATES[k.state] ? k.state : 'unknown';
      var cell = [el('span', 'badge state-' + state, k.state)];
      if (k.reason) cell.push(el('span', 'reason', k.reason.replace(/_/g, ' ')));
      (k.models || []).forEach(function (m) {
        cell.push(el('div', 'model model-' + (m.state === 'unavailable' ? 'unavailable' : 'cooling'), m.model + ': ' + m.state + ' ' + seconds(m.leftMs)));
      });
      c[1].replaceChildren.apply(c[1], cell);
      renderBar(c[2], k);
      c[3].textContent = num.format(k.inflight);
      c[4].textContent = num.format(k.perMinute.requests);
      c[5].textContent = num.format(k.perMinute.rateLimited);
      c[6].textContent = num.format(k.requests);
      c[6].title = k.successes + ' ok, ' + k.rateLimited + ' rate-limited, ' + k.outOfCredit + ' out of credit, ' + k.serverErrors + ' server errors';
      c[7].textContent = compact.format(k.tokensIn) + ' / ' + compact.format(k.tokensOut);
      c[8].replaceChildren.apply(c[8], (k.headroom || []).map(function (h) {
        var parts = [h.model || 'any model'];
        if (h.requests) parts.push('req ' + num.format(h.requests.remaining) + '/' + num.format(h.requests.limit));
        if (h.tokens) parts.push('tok ' + compact.format(h.tokens.remaining) + '/' + compact.format(h.tokens.limit));
        return el('div', 'hr', parts.join(' '));
      }));
    });
    Array.prototype.slice.call(tbody.children).forEach(function (tr) {
      if (!seen[tr.dataset.key]) tr.remove();
    });
  }

  // The bar's full width is the cooldown as first seen; it shrinks to nothing at 'until'.
  function renderBar(td, k) {
    var bar = td.querySelector('.bar');
    if (!k.until || k.leftMs === null || k.leftMs <= 0) {
      if (bar) td.replaceChildren();
      return;
    }
    var until = Date.parse(k.until);
    if (!bar || Number(bar.dataset.until) !== until) {
      bar = el('div', 'bar');
      bar.dataset.until = String(until);
      bar.dataset.total = String(k.leftMs);
      bar.appendChild(el('div', 'fill'));
      td.replaceChildren(bar, el('span', 'left'));
    }
    tickBar(bar);
  }
  function tickBar(bar) {
    var left = Number(bar.dataset.until) - serverNow();
    var total = Number(bar.dataset.total);
    var share = total > 0 ? Math.max(0, Math.min(1, left / total)) : 0;
    bar.firstChild.style.width = (share * 100).toFixed(2) + '%';
    var label = bar.nextSibling;
    if (label) label.textContent = seconds(left);
  }
  function tick() {
    Array.prototype.forEach.call(document.querySelectorAll('.bar'), tickBar);
  }

  function renderClients(clients) {
    var tbody = byId('clients').querySelector('tbody');
    var seen = {};
    clients.forEach(function (cl, i) {
      seen[cl.name] = true;
      var tr = null;
      for (var j = 0; j < tbody.children.length; j++) if (tbody.children[j].dataset.client === cl.name) tr = tbody.children[j];
      if (!tr) {
        tr = el('tr');
        tr.dataset.client = cl.name;
        ['cname', 'requests num', 'rpm num', 'inflight num', 'waiting num', 's2xx num', 's4xx num', 's5xx num', 'r429 num', 'tokens num', 'seen'].forEach(function (c) { tr.appendChild(el('td', c)); });
      }
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      var c = tr.children;
      c[0].textContent = cl.name;
      c[1].textContent = num.format(cl.requests);
      c[2].textContent = num.format(cl.perMinute ? cl.perMinute.requests : 0);
      c[3].textContent = num.format(cl.inFlight);
      c[4].textContent = num.format(cl.waiting);
      c[5].textContent = num.format(cl['2xx']);
      c[6].textContent = num.format(cl['4xx']);
      c[7].textContent = num.format(cl['5xx']);
      c[8].textContent = num.format(cl.rateLimited);
      c[9].textContent = compact.format(cl.tokensIn) + ' / ' + compact.format(cl.tokensOut);
      c[10].textContent = ago(cl.lastSeen);
    });
    Array.prototype.slice.call(tbody.children).forEach(function (tr) {
      if (!seen[tr.dataset.client]) tr.remove();
    });
    byId('no-clients').hidden = clients.length > 0;
  }

  byId('login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var input = byId('token');
    try { sessionStorage.setItem(TOKEN_KEY, input.value); } catch (e) { /* storage off: nothing to keep */ }
    input.value = '';
    byId('login').hidden = true;
    waitingForToken = false;
    setConn('connecting', 'wait');
    poll();
  });
  setInterval(tick, TICK_MS);
  poll();
})();
`;
