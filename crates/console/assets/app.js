// Blackbox forensic console (docs/CONSOLE.md). Plain JavaScript, no dependencies: a client of
// the service's API with the token the user typed (kept in this tab's sessionStorage, sent in
// the Authorization header, never in a URL). Every value shown is set as text, never as HTML.
'use strict';
(() => {
  const store = window.sessionStorage;
  let token = store.getItem('bbx-token') || '';
  let me = null; // the last GET /v1/overview: tenants, scopes, key fingerprint
  const view = document.getElementById('view');

  // ---------------------------------------------------------------------------------------
  // DOM and API helpers
  // ---------------------------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.append(kid instanceof Node ? kid : String(kid));
    }
    return e;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options) {
    const { method = 'GET', body } = options || {};
    const headers = { Authorization: 'Bearer ' + token, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'unreachable', 'The service did not answer (' + e.message + '). Is blackbox serve running?');
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      if (resp.status === 401) signOut('The service refused this token (401): sign in again.');
      throw new ApiError(resp.status, err.code || String(resp.status), err.message || text || resp.statusText);
    }
    return data;
  }

  const isAdmin = () => !!(me && me.scopes.includes('admin'));
  // The tenant the views work on: the token's own, or the one an admin picked.
  function tenant() {
    if (!me) return null;
    if (me.token_tenant) return me.token_tenant;
    const picked = store.getItem('bbx-tenant');
    if (picked && me.tenants.some((t) => t.tenant_id === picked)) return picked;
    return me.tenants.length ? me.tenants[0].tenant_id : null;
  }
  // `tenant_id` for admin tokens (a tenant token's requests stay on its tenant).
  function withTenant(params) {
    const p = new URLSearchParams(params || {});
    if (!me || !me.token_tenant) { const t = tenant(); if (t) p.set('tenant_id', t); }
    return p;
  }

  function fmtAge(iso) {
    const ms = Date.now() - Date.parse(iso);
    if (!isFinite(ms)) return '';
    const s = Math.round(ms / 1000);
    if (s < 90) return s + ' s ago';
    if (s < 5400) return Math.round(s / 60) + ' min ago';
    if (s < 172800) return Math.round(s / 3600) + ' h ago';
    return Math.round(s / 86400) + ' days ago';
  }

  function laneColor(name) {
    let h = 0;
    for (const c of String(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return 'hsl(' + (h % 360) + ', 55%, 36%)';
  }

  function showError(where, e) {
    const msg = e instanceof ApiError
      ? (e.status === 403 ? 'Not allowed with this token: ' : '') + e.message + (e.code ? ' (' + e.code + ')' : '')
      : String(e && e.message || e);
    where.replaceChildren(el('p', { class: 'error', role: 'alert', text: msg }));
  }

  function loading(what) {
    view.replaceChildren(el('p', { class: 'loading muted', text: 'Loading ' + what }));
  }

  // ---------------------------------------------------------------------------------------
  // Signing in and out
  // ---------------------------------------------------------------------------------------
  const signin = document.getElementById('signin');
  const nav = document.getElementById('nav');
  const signoutBtn = document.getElementById('signout');

  function signOut(why) {
    token = '';
    me = null;
    store.removeItem('bbx-token');
    store.removeItem('bbx-tenant');
    nav.hidden = true;
    signoutBtn.hidden = true;
    document.getElementById('who').textContent = '';
    view.replaceChildren();
    signin.hidden = false;
    document.getElementById('signin-error').textContent = why || '';
    document.getElementById('token').focus();
  }

  async function signIn(t) {
    token = t.trim();
    me = await api('/v1/overview');
    store.setItem('bbx-token', token);
    signin.hidden = true;
    nav.hidden = false;
    signoutBtn.hidden = false;
    document.getElementById('who').textContent =
      (me.token_tenant ? 'tenant ' + me.token_tenant : 'all tenants') + ' · ' + me.scopes.join(', ');
  }

  document.getElementById('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = document.getElementById('token');
    const errorBox = document.getElementById('signin-error');
    errorBox.textContent = '';
    try {
      await signIn(input.value);
      input.value = '';
      route();
    } catch (e) {
      token = '';
      errorBox.textContent = e instanceof ApiError && e.status === 401
        ? 'This token is not valid for this service.'
        : String(e.message || e);
    }
  });
  signoutBtn.addEventListener('click', () => signOut(''));

  // ---------------------------------------------------------------------------------------
  // Overview
  // ---------------------------------------------------------------------------------------
  async function overview() {
    loading('the overview');
    me = await api('/v1/overview');
    const cards = me.tenants.map((t) => {
      const result = el('p', { class: 'muted', text: '' });
      const verifyBtn = el('button', { type: 'button', class: 'secondary' }, 'Verify now');
      verifyBtn.addEventListener('click', async () => {
        verifyBtn.disabled = true;
        const started = Date.now();
        const tick = setInterval(() => {
          result.textContent = 'Verifying the whole chain… ' + Math.round((Date.now() - started) / 1000) + ' s';
        }, 250);
        result.className = 'loading muted';
        try {
          const p = new URLSearchParams();
          if (!me.token_tenant) p.set('tenant_id', t.tenant_id);
          const r = await api('/v1/verify?' + p);
          const chain = (r.chains || []).find((c) => c.tenant_id === t.tenant_id) || r;
          const good = r.status === 'ok';
          result.className = good ? 'ok' : 'error';
          result.textContent = (good ? '✓ Verified: ' : '✗ ' + (r.status || 'failed') + ': ') +
            (chain.entries !== undefined ? chain.entries + ' entries, ' : '') +
            'checked by the service in ' + ((Date.now() - started) / 1000).toFixed(1) + ' s';
        } catch (e) {
          showError(result, e);
        } finally {
          clearInterval(tick);
          verifyBtn.disabled = false;
        }
      });
      const cp = t.checkpoint;
      const pick = me.token_tenant ? null : el('button', {
        type: 'button', class: 'secondary',
        onclick: () => { store.setItem('bbx-tenant', t.tenant_id); location.hash = '#/timeline'; },
      }, 'Open this tenant');
      return el('section', { class: 'card', 'aria-label': 'Tenant ' + t.tenant_id },
        el('h2', { text: t.tenant_id }),
        el('dl', {},
          el('dt', { text: 'Entries' }), el('dd', { text: t.entries.toLocaleString() }),
          el('dt', { text: 'Agents' }), el('dd', { text: t.agents + ' (' + t.agents_paused + ' paused, ' + t.agents_throttled + ' throttled)' }),
          el('dt', { text: 'Open alerts' }), el('dd', {}, el('a', { href: '#/alerts?state=open', text: t.alerts_open + (t.alerts_open_more ? '+' : '') })),
          el('dt', { text: 'Last checkpoint' }),
          el('dd', { text: cp ? cp.size.toLocaleString() + ' entries, signed ' + cp.timestamp + ' (' + fmtAge(cp.timestamp) + ')' : 'none yet' }),
          el('dt', { text: 'Uncovered' }),
          el('dd', { text: cp ? (t.entries - cp.size).toLocaleString() + ' entries after it' : String(t.entries) })),
        el('div', { class: 'actions' }, verifyBtn, pick), result);
    });
    view.replaceChildren(
      el('h1', { text: 'Overview' }),
      el('p', { class: 'muted' }, 'Checkpoint key ', el('span', { class: 'mono', text: me.key_fingerprint }),
        ' — compare it with the one your auditor holds (blackbox keys show).'),
      cards.length ? el('div', { class: 'cards' }, cards)
        : el('p', { text: 'No tenant has entries yet. Send an event (POST /v1/events) and reload.' }));
  }

  // ---------------------------------------------------------------------------------------
  // Timeline
  // ---------------------------------------------------------------------------------------
  const FILTERS = [
    ['agent_id', 'Agent'], ['session_id', 'Session'], ['tool', 'Tool'],
    ['event_type', 'Event type'], ['start', 'From (claimed time)'], ['end', 'To'],
  ];

  function summary(e) {
    const p = e.payload || {};
    if (e.event_type === 'anomaly_detected') return 'rule ' + (p.rule || '?') + (p.action ? ' → ' + p.action : '');
    if (p.authorization && p.authorization.decision) return p.authorization.decision + (p.authorization.rule ? ' (' + p.authorization.rule + ')' : '');
    if (p.tool_name) return p.tool_name;
    if (p.model) return p.model;
    return '';
  }

  function originChip(o) {
    if (!o) return el('span', { class: 'chip', text: 'v1 (no origin)' });
    if (o.kind === 'service') return el('span', { class: 'chip service', text: 'service' });
    return el('span', { class: 'chip', text: (o.via || 'token') + ' ' + (o.token_id || '') });
  }

  async function timeline(params) {
    const form = el('form', { class: 'filters', role: 'search' });
    for (const [name, label] of FILTERS) {
      const id = 'f-' + name;
      form.append(el('div', {}, el('label', { for: id, text: label }),
        el('input', { id, name, value: params.get(name) || '', placeholder: name === 'start' || name === 'end' ? '2026-12-01 or RFC 3339' : '' })));
    }
    const origin = el('select', { id: 'f-origin', name: 'origin' },
      ['any', 'service', 'agent'].map((v) => el('option', { value: v, selected: (params.get('origin') || 'any') === v }, v)));
    form.append(el('div', {}, el('label', { for: 'f-origin', text: 'Written by' }), origin),
      el('button', { type: 'submit' }, 'Apply'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v && !(k === 'origin' && v === 'any')) q.set(k, v.trim());
      location.hash = '#/timeline?' + q;
    });
    const tbody = el('tbody');
    const table = el('table', {},
      el('caption', { class: 'muted', text: 'Entries in claimed-time order; the writer’s time is beside it. Select a row for its proof.' }),
      el('thead', {}, el('tr', {}, ['Claimed time', 'Written at', 'Agent', 'Session', 'Event', 'What', 'Written by', 'Seq']
        .map((c) => el('th', { scope: 'col', text: c })))),
      tbody);
    const status = el('p', { class: 'muted', role: 'status' });
    const more = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Load more');
    view.replaceChildren(el('h1', { text: 'Timeline' + (tenant() ? ' — ' + tenant() : '') }), form, status, table, more);
    const wantOrigin = params.get('origin');
    let cursor = null;
    let shown = 0;
    async function page() {
      more.disabled = true;
      status.className = 'loading muted';
      status.textContent = 'Loading entries';
      const q = withTenant({ format: 'json', limit: '200' });
      for (const [name] of FILTERS) if (params.get(name)) q.set(name, params.get(name));
      if (cursor) q.set('cursor', cursor);
      try {
        const r = await api('/v1/entries?' + q);
        for (const e of r.entries) {
          const o = e.origin;
          if (wantOrigin === 'service' && !(o && o.kind === 'service')) continue;
          if (wantOrigin === 'agent' && (o && o.kind === 'service')) continue;
          const go = () => { location.hash = '#/entry/' + e.entry_id; };
          tbody.append(el('tr', {
            class: 'row', tabindex: '0', onclick: go,
            onkeydown: (ev) => { if (ev.key === 'Enter') go(); },
          },
          el('td', { class: 'mono', text: e.timestamp }),
          el('td', { class: 'mono', text: e.written_at || '' }),
          el('td', {}, el('span', { class: 'lane', style: null, 'data-lane': e.agent_id, text: e.agent_id })),
          el('td', { text: e.session_id }),
          el('td', {}, el('span', { class: 'chip', text: e.event_type })),
          el('td', { text: summary(e) }),
          el('td', {}, originChip(o)),
          el('td', { class: 'mono', text: String(e.seq) })));
          shown += 1;
        }
        // Lane colours are set through the CSS object model (the policy forbids inline styles).
        for (const lane of tbody.querySelectorAll('.lane[data-lane]')) {
          lane.style.backgroundColor = laneColor(lane.dataset.lane);
          lane.removeAttribute('data-lane');
        }
        cursor = r.next_cursor;
        more.hidden = !cursor;
        status.className = 'muted';
        status.textContent = shown ? shown + ' entries shown' + (cursor ? '; more below' : '') : 'No entries match these filters.';
      } catch (e) {
        showError(status, e);
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener('click', page);
    await page();
  }

  // ---------------------------------------------------------------------------------------
  // Entry detail and the proof checked in the browser
  // ---------------------------------------------------------------------------------------
  const enc = new TextEncoder();
  const fromB64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  const fromHex = (h) => new Uint8Array((h.match(/../g) || []).map((x) => parseInt(x, 16)));
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  const sha256 = async (...parts) => new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));

  // A C2SP signed note checked with a verifier key `<name>+<8 hex>+<base64(0x01 || key)>`
  // (docs/FORMAT.md §7); answers the checkpoint's lines.
  async function openNote(note, vkey) {
    // The key's base64 may itself hold '+': the name and the hash end at the first two.
    const m = vkey.trim().match(/^([^+]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+=*)$/);
    if (!m) throw new Error('the verifier key is not <name>+<8 hex>+<base64 key>');
    const [, name, hashHex, keyB64] = m;
    const raw = fromB64(keyB64);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error('the verifier key is not an Ed25519 key');
    const pub = raw.slice(1);
    const keyHash = (await sha256(enc.encode(name + '\n'), new Uint8Array([1]), pub)).slice(0, 4);
    if (toHex(keyHash) !== hashHex) throw new Error('the verifier key’s hash does not match its key');
    const split = note.indexOf('\n\n');
    if (split < 0) throw new Error('the checkpoint has no signature block');
    const text = note.slice(0, split + 1);
    const key = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
    for (const line of note.slice(split + 2).split('\n')) {
      const m = line.match(/^\u2014 (\S+) (\S+)$/);
      if (!m || m[1] !== name) continue;
      const sig = fromB64(m[2]);
      if (sig.length !== 68 || !same(sig.slice(0, 4), keyHash)) continue;
      if (await crypto.subtle.verify({ name: 'Ed25519' }, key, sig.slice(4), enc.encode(text))) {
        const lines = text.split('\n');
        return { origin: lines[0], size: Number(lines[1]), root: fromB64(lines[2]), time: lines[3] };
      }
    }
    throw new Error('no signature by this key verifies the checkpoint');
  }

  // RFC 9162 §2.1.3.2: the root an inclusion proof leads to.
  async function rootOf(index, size, leaf, path) {
    if (!(index < size)) throw new Error('the entry is not inside the checkpoint');
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    for (const p of path) {
      if (sn === 0) throw new Error('the proof is too long');
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(new Uint8Array([1]), p, r);
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = await sha256(new Uint8Array([1]), r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error('the proof is too short');
    return r;
  }

  // Every check, in order; the first that fails stops the rest.
  async function checkInBrowser(line, proof, vkey) {
    const checks = [];
    const check = (ok, what) => { checks.push({ ok, what }); if (!ok) throw new Error(what); };
    try {
      if (!window.crypto || !crypto.subtle) throw new Error('this browser has no WebCrypto (use https or localhost)');
      const entryHash = toHex(await sha256(enc.encode(line)));
      check('sha256:' + entryHash === proof.entry_hash, 'the entry’s bytes hash to the proof’s entry_hash');
      const entry = JSON.parse(line);
      check(entry.seq === proof.seq && entry.tenant_id === proof.tenant_id && entry.entry_id === proof.entry_id,
        'the entry is the one the proof is about (seq, tenant, id)');
      const cp = await openNote(proof.checkpoint, vkey);
      check(true, 'the checkpoint is signed by the checkpoint key (Ed25519)');
      check(cp.origin.endsWith('/' + proof.tenant_id), 'the checkpoint is of this tenant’s chain');
      check(cp.size === proof.tree_size, 'the proof is against the checkpoint’s size (' + cp.size + ')');
      const leaf = await sha256(new Uint8Array([0]), fromHex(entryHash));
      const root = await rootOf(proof.seq - 1, proof.tree_size, leaf, proof.hashes.map(fromB64));
      check(same(root, cp.root), 'the inclusion proof leads to the signed root');
      return { ok: true, checks, checkpoint: cp };
    } catch (e) {
      if (!checks.length || checks[checks.length - 1].ok) checks.push({ ok: false, what: String(e.message || e) });
      return { ok: false, checks };
    }
  }

  async function entry(id) {
    loading('the entry');
    const q = withTenant();
    const rec = await api('/v1/entries/' + encodeURIComponent(id) + '?' + q);
    const e = rec.entry;
    const field = (k, v, mono) => [el('dt', { text: k }), el('dd', { class: mono ? 'mono' : null, text: v === undefined || v === null ? '—' : String(v) })];
    const o = e.origin;
    const proofBox = el('section', { class: 'proof', 'aria-label': 'Inclusion proof' },
      el('p', { class: 'loading muted', text: 'Checking the inclusion proof in your browser' }));
    const t = Date.parse(e.timestamp);
    const around = (extra) => {
      const p = new URLSearchParams(extra);
      p.set('start', new Date(t - 3600e3).toISOString());
      p.set('end', new Date(t + 3600e3).toISOString());
      return '#/timeline?' + p;
    };
    view.replaceChildren(
      el('h1', { text: e.event_type + ' #' + e.seq }),
      el('div', { class: 'actions' },
        el('a', { href: around({ agent_id: e.agent_id }) }, 'What else did this agent do (±1 h)'),
        el('a', { href: around({ session_id: e.session_id }) }, 'This session (±1 h)'),
        e.payload && e.payload.trace_id ? el('a', { href: around({}) }, 'Same hour, all agents') : null),
      el('dl', { class: 'fields' },
        field('Entry id', e.entry_id, true), field('Tenant', e.tenant_id), field('Seq', e.seq),
        field('Agent', e.agent_id), field('Session', e.session_id), field('Event type', e.event_type),
        field('Claimed time (agent)', e.timestamp, true), field('Written at (service)', e.written_at, true),
        field('Clock skew', e.clock_skew_ms === undefined ? 'within bounds' : e.clock_skew_ms + ' ms'),
        field('Written by', o ? (o.kind === 'service' ? 'the service itself' : 'a client holding token ' + o.token_id + ' (' + o.scope + ') via ' + o.via) : 'version 1 entry: no origin'),
        field('HMAC key', e.key_id, true), field('HMAC', e.hmac_sha256, true),
        field('Previous entry hash', e.prev_entry_hash, true), field('Entry hash', rec.entry_hash, true)),
      Array.isArray(e.payload && e.payload.triggered_by) && e.payload.triggered_by.length
        ? el('p', {}, 'Triggered by: ', e.payload.triggered_by.map((t, i) => [i ? ', ' : '',
          el('a', { href: '#/entry/' + encodeURIComponent(t), class: 'mono', text: t })]))
        : null,
      proofBox,
      el('h2', { text: 'Payload (raw content already replaced by hashes)' }),
      el('pre', { text: JSON.stringify(e.payload, null, 2) }));
    try {
      const [proof, key] = await Promise.all([
        // The entry's own chain (an admin may open any tenant's entry).
        api('/v1/proofs/inclusion?' + new URLSearchParams(me.token_tenant
          ? { entry_id: id } : { entry_id: id, tenant_id: rec.tenant_id })),
        api('/v1/checkpoints/key'),
      ]);
      const r = await checkInBrowser(rec.line, proof, key.verifier_key);
      proofBox.className = 'proof ' + (r.ok ? 'good' : 'bad');
      proofBox.replaceChildren(
        el('h2', { class: r.ok ? 'ok' : 'error', id: 'proof-verdict', text: r.ok ? '✓ Verified in your browser' : '✗ Not verified: the proof does not hold' }),
        el('ul', {}, r.checks.map((c) => el('li', { class: c.ok ? 'ok' : 'error', text: (c.ok ? '✓ ' : '✗ ') + c.what }))),
        el('p', { class: 'muted' }, 'Checked here with WebCrypto (SHA-256, Ed25519) against the checkpoint key ',
          el('span', { class: 'mono', text: key.fingerprint }),
          r.checkpoint ? ', checkpoint of ' + r.checkpoint.size + ' entries, ' + r.checkpoint.time : '', '.'));
    } catch (err) {
      proofBox.className = 'proof bad';
      if (err instanceof ApiError && err.status === 404) {
        proofBox.replaceChildren(el('p', { class: 'warn', text: 'No checkpoint covers this entry yet (' + err.message + '); the next one will.' }));
      } else {
        showError(proofBox, err);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Alerts
  // ---------------------------------------------------------------------------------------
  async function alerts(params) {
    loading('the alerts');
    const state = params.get('state') || '';
    const q = withTenant({ limit: '500' });
    if (state) q.set('state', state);
    const r = await api('/v1/alerts?' + q);
    const picker = el('select', { id: 'a-state', onchange: (ev) => { location.hash = '#/alerts' + (ev.target.value ? '?state=' + ev.target.value : ''); } },
      ['', 'open', 'acknowledged', 'resolved'].map((v) => el('option', { value: v, selected: v === state }, v || 'any state')));
    const rows = r.alerts.map((a) => {
      const t = Date.parse(a.fired_at);
      const scope = new URLSearchParams({ agent_id: a.agent_id, start: new Date(t - 3600e3).toISOString(), end: new Date(t + 3600e3).toISOString() });
      const cell = el('td', {});
      if (isAdmin() && a.state !== 'resolved') {
        const ticket = el('input', { 'aria-label': 'Ticket for ' + a.alert_id, placeholder: 'ticket (optional)', size: 12 });
        const resolution = el('select', { 'aria-label': 'Resolution for ' + a.alert_id },
          ['true_positive', 'false_positive', 'accepted_risk'].map((v) => el('option', { value: v }, v)));
        const msg = el('span', { role: 'status' });
        const act = async (path, body) => {
          try {
            await api('/v1/alerts/' + encodeURIComponent(a.alert_id) + path + '?' + withTenant(), { method: 'POST', body });
            route();
          } catch (e) { showError(msg, e); }
        };
        const withTicket = (b) => (ticket.value.trim() ? Object.assign(b, { ticket: ticket.value.trim() }) : b);
        cell.append(ticket,
          a.state === 'open' ? el('button', { type: 'button', class: 'secondary', onclick: () => act('/ack', withTicket({})) }, 'Acknowledge') : null,
          resolution,
          el('button', { type: 'button', onclick: () => act('/resolve', withTicket({ resolution: resolution.value })) }, 'Resolve'),
          msg);
      } else {
        cell.append(a.resolution ? a.resolution : '');
      }
      return el('tr', {},
        el('td', { class: 'mono', text: a.fired_at }),
        el('td', { text: a.agent_id }),
        el('td', { text: a.rule }),
        el('td', { text: a.severity || '' }),
        el('td', { text: a.action + (a.enforcement ? ' · ' + a.enforcement : '') }),
        el('td', {}, el('span', { class: 'chip ' + a.state, text: a.state })),
        el('td', {}, el('a', { href: '#/entry/' + a.alert_id }, 'alert entry'), ' · ',
          el('a', { href: '#/timeline?' + scope }, 'agent ±1 h')),
        cell);
    });
    view.replaceChildren(
      el('h1', { text: 'Alerts' }),
      el('div', { class: 'filters' }, el('div', {}, el('label', { for: 'a-state', text: 'State' }), picker)),
      rows.length ? el('table', {},
        el('thead', {}, el('tr', {}, ['Fired', 'Agent', 'Rule', 'Severity', 'Action', 'State', 'Evidence', isAdmin() ? 'Triage' : 'Resolution']
          .map((c) => el('th', { scope: 'col', text: c })))),
        el('tbody', {}, rows))
        : el('p', { text: 'No alerts' + (state ? ' in state ' + state : '') + '.' }),
      r.next_cursor ? el('p', { class: 'muted', text: 'Showing the first 500; narrow with the state filter.' }) : null);
  }

  // ---------------------------------------------------------------------------------------
  // Agents
  // ---------------------------------------------------------------------------------------
  async function agents() {
    loading('the agents');
    const r = await api('/v1/agents?' + withTenant());
    const rows = r.agents.map((a) => {
      const cell = el('td', {});
      if (isAdmin()) {
        const msg = el('span', { role: 'status' });
        const act = async (what) => {
          try {
            await api('/v1/agents/' + encodeURIComponent(a.agent_id) + '/' + what, { method: 'POST', body: { tenant_id: a.tenant_id, reason: 'from the console' } });
            route();
          } catch (e) { showError(msg, e); }
        };
        cell.append(a.state === 'paused'
          ? el('button', { type: 'button', onclick: () => act('resume') }, 'Resume')
          : el('button', { type: 'button', class: 'secondary', onclick: () => act('pause') }, 'Pause'), msg);
      }
      return el('tr', {},
        el('td', {}, el('a', { href: '#/timeline?' + new URLSearchParams({ agent_id: a.agent_id }) }, a.agent_id)),
        el('td', { text: a.tenant_id }),
        el('td', {}, el('span', { class: 'chip ' + (a.state === 'active' ? 'allow' : 'block'), text: a.state })),
        el('td', { text: a.paused_by ? a.paused_by + ' since ' + a.paused_since : (a.throttled_until ? 'until ' + a.throttled_until : '') }),
        el('td', { class: 'mono', text: a.last_seen || '' }),
        el('td', { text: String(a.events) }),
        cell);
    });
    view.replaceChildren(el('h1', { text: 'Agents' }),
      rows.length ? el('table', {},
        el('thead', {}, el('tr', {}, ['Agent', 'Tenant', 'State', 'Paused or throttled', 'Last seen', 'Events', isAdmin() ? 'Action' : '']
          .map((c) => el('th', { scope: 'col', text: c })))),
        el('tbody', {}, rows))
        : el('p', { text: 'No agent has sent anything since the service started.' }));
  }

  // ---------------------------------------------------------------------------------------
  // Routing
  // ---------------------------------------------------------------------------------------
  async function route() {
    if (!token) { signOut(''); return; }
    const [path, qs] = (location.hash.slice(1) || '/overview').split('?');
    const params = new URLSearchParams(qs || '');
    for (const a of nav.querySelectorAll('a')) {
      if (a.getAttribute('href') === '#' + path.split('/').slice(0, 2).join('/')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    try {
      if (!me) await signIn(token);
      if (path === '/overview' || path === '/') await overview();
      else if (path === '/timeline') await timeline(params);
      else if (path.startsWith('/entry/')) await entry(decodeURIComponent(path.slice(7)));
      else if (path === '/alerts') await alerts(params);
      else if (path === '/agents') await agents();
      else view.replaceChildren(el('p', { class: 'error', text: 'No such view: ' + path }));
      document.getElementById('main').focus({ preventScroll: true });
    } catch (e) {
      if (token) showError(view, e);
    }
  }

  window.addEventListener('hashchange', route);
  route();
})();
