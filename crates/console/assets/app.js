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

  // A request with the token in its header; answers the response once it is a success, and
  // throws an ApiError naming the service's refusal otherwise (a 401 signs out).
  async function request(path, options) {
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
    if (!resp.ok) {
      const text = await resp.text();
      let err = {};
      try { err = (JSON.parse(text) || {}).error || {}; } catch (_) { err = {}; }
      if (resp.status === 401) signOut('The service refused this token (401): sign in again.');
      throw new ApiError(resp.status, err.code || String(resp.status), err.message || text || resp.statusText);
    }
    return resp;
  }

  // A JSON answer (null for an empty body).
  async function api(path, options) {
    const text = await (await request(path, options)).text();
    try { return text ? JSON.parse(text) : null; } catch (_) { return null; }
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

  // Replaces the view; kids that are null, undefined or false (a part a view leaves out) are
  // skipped, not written as text.
  function show(...kids) {
    view.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
  }

  function loading(what) {
    show(el('p', { class: 'loading muted', text: 'Loading ' + what }));
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
    show();
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
    // The witnesses of [witnessing] (docs/WITNESS.md); an older service has no such route.
    let wit = null;
    try { wit = await api('/v1/witnesses'); } catch (e) { wit = null; }
    const witnessed = (tenant) => {
      if (!wit || !wit.witnesses.length) return 'no witness configured';
      const sizes = wit.witnesses.map((w) => [w.name, w.cosigned[tenant]]).filter(([, s]) => s !== undefined);
      if (!sizes.length) return 'not yet cosigned (quorum ' + wit.quorum + ' of ' + wit.witnesses.length + ')';
      // The size the quorum has cosigned: the quorum-th largest of the witnesses' sizes.
      const desc = sizes.map(([, s]) => s).sort((a, b) => b - a);
      const upTo = desc.length >= wit.quorum ? desc[wit.quorum - 1] : null;
      return (upTo !== null ? 'up to ' + upTo.toLocaleString() + ' entries' : 'below the quorum') +
        ' (quorum ' + wit.quorum + ' of ' + wit.witnesses.length + '): ' +
        sizes.map(([n, s]) => n + ' ' + s.toLocaleString()).join(', ');
    };
    const cards = me.tenants.map((t) => {
      const result = el('p', { class: 'muted', text: '' });
      const verifyBtn = el('button', { type: 'button', class: 'secondary' }, 'Verify now');
      verifyBtn.addEventListener('click', async () => {
        verifyBtn.disabled = true;
        const started = Date.now();
        let checked = 0;
        const secs = () => ((Date.now() - started) / 1000).toFixed(1) + ' s';
        const tick = setInterval(() => {
          result.textContent = 'Verifying the whole chain… ' + checked.toLocaleString() + ' of ' +
            t.entries.toLocaleString() + ' entries checked, ' + secs();
        }, 250);
        result.className = 'loading muted';
        try {
          // The service streams how far it is ({"checked": n} lines), then the report.
          const p = new URLSearchParams({ progress: 'true' });
          if (!me.token_tenant) p.set('tenant_id', t.tenant_id);
          const resp = await request('/v1/verify?' + p);
          const reader = resp.body.getReader();
          const dec = new TextDecoder();
          let buf = '';
          let last = null;
          for (;;) {
            const { value, done } = await reader.read();
            if (value) buf += dec.decode(value, { stream: true });
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = JSON.parse(buf.slice(0, nl));
              buf = buf.slice(nl + 1);
              if (line.checked !== undefined) checked = line.checked;
              else last = line;
            }
            if (done) break;
          }
          if (!last) throw new Error('the service ended the verification without a report');
          if (last.error) throw new ApiError(503, last.error.code, last.error.message);
          const r = last.report;
          const chain = (r.chains || []).find((c) => c.tenant_id === t.tenant_id) || r;
          const good = r.status === 'ok';
          result.className = good ? 'ok' : 'error';
          const w = chain.witnessed;
          result.textContent = (good ? '✓ Verified: ' : '✗ ' + (r.status || 'failed') + ': ') +
            (chain.entries !== undefined ? chain.entries.toLocaleString() + ' entries, ' : '') +
            'checked by the service in ' + secs() +
            (w ? '; witnessed up to ' + w.size.toLocaleString() + ' by ' + w.cosigners.map((c) => c.witness).join(', ') +
              (w.missing.length ? ' (not by ' + w.missing.join(', ') + ')' : '') : '') +
            (good ? '' : ' — ' + r.summary);
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
          el('dd', { text: cp ? (t.entries - cp.size).toLocaleString() + ' entries after it' : String(t.entries) }),
          el('dt', { text: 'Witnessed' }),
          el('dd', { text: witnessed(t.tenant_id) })),
        el('div', { class: 'actions' }, verifyBtn, pick), result);
    });
    show(
      el('h1', { text: 'Overview' }),
      el('p', { class: 'muted' }, 'Checkpoint key ', el('span', { class: 'mono', text: me.key_fingerprint }),
        ' — compare it with the one your auditor holds (blackbox keys show).'),
      cards.length ? el('div', { class: 'cards' }, cards)
        : el('p', { text: 'No tenant has entries yet. Send an event (POST /v1/events) and reload.' }),
      witnessesSection(wit));
  }

  // The witnesses and where each stands: what it cosigned, its last refusal or failure.
  function witnessesSection(wit) {
    if (!wit) return null;
    if (!wit.witnesses.length) {
      return el('section', { 'aria-label': 'Witnesses' }, el('h2', { text: 'Witnesses' }),
        el('p', { class: 'muted', text: 'No witness is configured: checkpoints are signed by this service alone. [witnessing] in blackbox.toml lists witnesses (docs/WITNESS.md).' }));
    }
    const rows = wit.witnesses.map((w) => el('tr', {},
      el('td', {}, el('span', { text: w.name }), el('br'), el('span', { class: 'mono muted', text: w.key })),
      el('td', { text: Object.entries(w.cosigned).map(([t, s]) => t + ': ' + s.toLocaleString()).join(', ') || 'nothing yet' }),
      el('td', { text: w.last_cosigned_at ? w.last_cosigned_at + ' (' + fmtAge(w.last_cosigned_at) + ')' : '—' }),
      el('td', { class: w.last_error ? 'error' : '', text: w.last_error ? w.last_error + (w.last_error_at ? ' (' + w.last_error_at + ')' : '') : 'none' }),
      el('td', { text: Object.entries(w.suspended).map(([t, why]) => t + ': ' + why).join('; ') || '—' })));
    return el('section', { 'aria-label': 'Witnesses' },
      el('h2', { text: 'Witnesses (quorum ' + wit.quorum + ' of ' + wit.witnesses.length + ')' }),
      el('table', {},
        el('thead', {}, el('tr', {}, ['Witness', 'Cosigned (per chain)', 'Last cosignature', 'Last refusal or failure', 'Suspended'].map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, rows)));
  }

  // ---------------------------------------------------------------------------------------
  // Timeline: filters, agents as lanes on a time axis (zoom from a year to a second), linked
  // entries, and the table
  // ---------------------------------------------------------------------------------------
  const FILTERS = [
    ['agent_id', 'Agent'], ['session_id', 'Session'], ['trace_id', 'Trace'], ['tool', 'Tool'],
    ['event_type', 'Event type'], ['start', 'From (claimed time)'], ['end', 'To'],
  ];
  const ZOOMS = [['1 year', 365 * 864e5], ['30 days', 30 * 864e5], ['1 day', 864e5],
    ['1 hour', 36e5], ['1 minute', 6e4], ['1 second', 1e3]];
  const ROWS_AT_ONCE = 1000;
  let routeStarted = 0;

  function summary(e) {
    const p = e.payload || {};
    if (e.event_type === 'anomaly_detected') return 'rule ' + (p.rule || '?') + (p.action ? ' → ' + p.action : '');
    if (p.authorization && p.authorization.decision) return (p.tool_name ? p.tool_name + ': ' : '') + p.authorization.decision;
    if (p.tool_name) return p.tool_name + (p.status ? ' → ' + p.status : '');
    if (p.model) return p.model;
    return '';
  }

  function originChip(o) {
    if (!o) return el('span', { class: 'chip', text: 'v1 (no origin)' });
    if (o.kind === 'service') return el('span', { class: 'chip service', text: 'service' });
    return el('span', { class: 'chip', text: (o.via || 'token') + ' ' + (o.token_id || '') });
  }

  // What an entry alarms on: an alert, or a call refused.
  const alarming = (e) => e.event_type === 'anomaly_detected' ||
    !!(e.payload && e.payload.authorization && ['block', 'paused', 'throttle'].includes(e.payload.authorization.decision));

  // Links between the entries loaded: the LLM or agent span a tool span ran under
  // (parent_span_id), the decision a result answers (decision_entry_id), the entries an alert
  // names (triggered_by), the calls of one invocation (invocation_id).
  function linker(entries) {
    const bySpan = new Map();
    const byInvocation = new Map();
    for (const e of entries) {
      const p = e.payload || {};
      if (p.span_id) bySpan.set(p.trace_id + '/' + p.span_id, e);
      if (p.invocation_id) {
        const k = e.session_id + '/' + p.invocation_id;
        if (!byInvocation.has(k)) byInvocation.set(k, []);
        byInvocation.get(k).push(e);
      }
    }
    return (e) => {
      const p = e.payload || {};
      const out = [];
      const parent = p.parent_span_id && bySpan.get(p.trace_id + '/' + p.parent_span_id);
      if (parent) out.push(['under', parent]);
      if (p.decision_entry_id) out.push(['answers', { entry_id: p.decision_entry_id, seq: null }]);
      for (const t of Array.isArray(p.triggered_by) ? p.triggered_by : []) out.push(['triggered by', { entry_id: t, seq: null }]);
      const same = p.invocation_id ? byInvocation.get(e.session_id + '/' + p.invocation_id) || [] : [];
      for (const o of same) if (o !== e && o.seq < e.seq && !out.some(([, x]) => x.entry_id === o.entry_id)) out.push(['same call', o]);
      return out;
    };
  }

  function entryRow(e, links) {
    const go = () => { location.hash = '#/entry/' + e.entry_id; };
    const lane = el('span', { class: 'lane', text: e.agent_id });
    lane.style.backgroundColor = laneColor(e.agent_id); // CSSOM: the policy forbids inline styles
    return el('tr', {
      class: 'row' + (alarming(e) ? ' alarm' : ''), tabindex: '0', onclick: go,
      onkeydown: (ev) => { if (ev.key === 'Enter') go(); },
    },
    el('td', { class: 'mono', text: e.timestamp }),
    el('td', { class: 'mono', text: e.written_at || '' }),
    el('td', {}, lane),
    el('td', { text: e.session_id }),
    el('td', {}, el('span', { class: 'chip' + (alarming(e) ? ' block' : ''), text: e.event_type })),
    el('td', { text: summary(e) }),
    el('td', {}, (links ? links(e) : []).map(([how, o], i) => [i ? ' ' : '',
      el('a', { href: '#/entry/' + encodeURIComponent(o.entry_id), onclick: (ev) => ev.stopPropagation(),
        text: how + ' ' + (o.seq ? '#' + o.seq : o.entry_id.slice(-6)) })])),
    el('td', {}, originChip(e.origin)),
    el('td', { class: 'mono', text: String(e.seq) }));
  }

  function entryTable(caption) {
    const tbody = el('tbody');
    const table = el('table', {},
      el('caption', { class: 'muted', text: caption }),
      el('thead', {}, el('tr', {}, ['Claimed time', 'Written at', 'Agent', 'Session', 'Event', 'What', 'Linked', 'Written by', 'Seq']
        .map((c) => el('th', { scope: 'col', text: c })))),
      tbody);
    return { table, tbody };
  }

  // Agents as lanes on a time axis: each entry a tick in its agent's lane, alerts and refusals
  // taller and red. Clicking centres the window there; the zoom buttons set its width.
  function lanes(entries, from, to, onPick, tsOf) {
    const agents = [];
    const seen = new Map();
    for (const e of entries) if (!seen.has(e.agent_id)) { seen.set(e.agent_id, agents.length); agents.push(e.agent_id); }
    const shown = agents.slice(0, 24);
    const laneH = 18;
    const axis = 22;
    const width = Math.max(480, Math.min(1360, view.clientWidth || 1000));
    const labelW = 150;
    const height = axis + laneH * (shown.length + (agents.length > shown.length ? 1 : 0)) + 4;
    const canvas = el('canvas', {
      class: 'lanes', role: 'img', tabindex: '0',
      'aria-label': entries.length + ' entries of ' + agents.length + ' agents from ' + new Date(from).toISOString() + ' to ' + new Date(to).toISOString() + '; alerts and refused calls in red',
    });
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.width = width + 'px';
    canvas.style.height = height + 'px';
    const g = canvas.getContext('2d');
    g.scale(ratio, ratio);
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#57606a';
    const span = Math.max(1, to - from);
    const x = (t) => labelW + (width - labelW - 8) * (t - from) / span;
    g.fillText(new Date(from).toISOString(), labelW, 12);
    const endLabel = new Date(to).toISOString();
    g.fillText(endLabel, width - 8 - g.measureText(endLabel).width, 12);
    shown.forEach((a, i) => {
      const y = axis + i * laneH;
      g.fillStyle = i % 2 ? '#ffffff' : '#f6f8fa';
      g.fillRect(labelW, y, width - labelW - 8, laneH);
      g.fillStyle = laneColor(a);
      g.fillText(a.length > 22 ? a.slice(0, 21) + '…' : a, 2, y + 13);
    });
    if (agents.length > shown.length) g.fillText('+' + (agents.length - shown.length) + ' more agents', 2, axis + shown.length * laneH + 13);
    for (const e of entries) {
      const i = seen.get(e.agent_id);
      const row = i < shown.length ? i : shown.length;
      const t = tsOf(e);
      if (!(t >= from && t <= to)) continue;
      const bad = alarming(e);
      g.fillStyle = bad ? '#a40e26' : (row < shown.length ? laneColor(e.agent_id) : '#57606a');
      g.fillRect(Math.round(x(t)), axis + row * laneH + (bad ? 1 : 4), bad ? 3 : 2, bad ? laneH - 2 : laneH - 8);
    }
    const pick = (clientX) => {
      const r = canvas.getBoundingClientRect();
      const px = clientX - r.left;
      if (px < labelW) return;
      onPick(from + (px - labelW) / (width - labelW - 8) * span);
    };
    canvas.addEventListener('click', (ev) => pick(ev.clientX));
    canvas.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') onPick(from + span / 2);
    });
    return canvas;
  }

  async function timeline(params) {
    const form = el('form', { class: 'filters', role: 'search' });
    for (const [name, label] of FILTERS) {
      const id = 'f-' + name;
      form.append(el('div', {}, el('label', { for: id, text: label }),
        el('input', { id, name, value: params.get(name) || '', placeholder: name === 'start' || name === 'end' ? '2026-12-01 or RFC 3339' : '' })));
    }
    const origin = el('select', { id: 'f-origin', name: 'origin' },
      [['any', 'anyone'], ['service', 'the service'], ['token', 'an API token (agents)'], ['local', 'the CLI on the host']]
        .map(([v, label]) => el('option', { value: v, selected: (params.get('origin') || 'any') === v }, label)));
    const basis = el('select', { id: 'f-time', name: 'time' },
      [['claimed', 'claimed by the agent'], ['written', 'written by the service']]
        .map(([v, label]) => el('option', { value: v, selected: (params.get('time') || 'claimed') === v }, label)));
    form.append(el('div', {}, el('label', { for: 'f-time', text: 'From/To bound the time' }), basis),
      el('div', {}, el('label', { for: 'f-origin', text: 'Written by' }), origin),
      el('button', { type: 'submit' }, 'Apply'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) {
        if (v && !(k === 'origin' && v === 'any') && !(k === 'time' && v === 'claimed')) q.set(k, v.trim());
      }
      location.hash = '#/timeline?' + q;
    });
    // One session or trace is loaded whole (up to 10,000 entries); otherwise pages of 1,000.
    const whole = params.get('session_id') || params.get('trace_id');
    const pageSize = whole ? 10000 : 1000;
    const { table, tbody } = entryTable('Entries in claimed-time order; the writer’s time is beside it. Select a row for its proof.');
    const status = el('p', { class: 'muted', role: 'status', id: 'timeline-status' });
    const more = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Load more from the service');
    const moreRows = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Show more rows');
    const strip = el('div', { class: 'strip' });
    const setWindow = (center, span) => {
      const q = new URLSearchParams(params);
      q.set('start', new Date(center - span / 2).toISOString());
      q.set('end', new Date(center + span / 2).toISOString());
      location.hash = '#/timeline?' + q;
    };
    const loaded = [];
    // The axis is the time the filters bound: the agent's claim, or the service's writing.
    const tsOf = params.get('time') === 'written'
      ? (e) => Date.parse(e.written_at || e.timestamp) : (e) => Date.parse(e.timestamp);
    const bounds = () => {
      const s = params.get('start') && Date.parse(params.get('start'));
      const e = params.get('end') && Date.parse(params.get('end'));
      if (s && e && e > s) return [s, e];
      const ts = loaded.map(tsOf).filter(isFinite);
      if (!ts.length) return [Date.now() - 36e5, Date.now()];
      let lo = Math.min(...ts);
      let hi = Math.max(...ts);
      if (s) lo = s;
      if (e) hi = e;
      const pad = Math.max(500, (hi - lo) * 0.02);
      return [lo - pad, hi + pad];
    };
    const zoom = el('div', { class: 'actions', role: 'group', 'aria-label': 'Zoom the time axis' },
      el('span', { class: 'muted', text: 'Window:' }),
      ZOOMS.map(([label, ms]) => el('button', {
        type: 'button', class: 'secondary',
        onclick: () => { const [a, b] = bounds(); setWindow((a + b) / 2, ms); },
      }, label)),
      el('button', { type: 'button', class: 'secondary', onclick: () => { const [a, b] = bounds(); setWindow((a + b) / 2, (b - a) / 10); } }, 'Zoom in'),
      el('button', { type: 'button', class: 'secondary', onclick: () => { const [a, b] = bounds(); setWindow((a + b) / 2, (b - a) * 10); } }, 'Zoom out'));
    show(el('h1', { text: 'Timeline' + (tenant() ? ' — ' + tenant() : '') }), form, zoom, strip, status, table, moreRows, more);
    let cursor = null;
    let rendered = 0;
    let links = () => [];
    const renderRows = () => {
      const frag = document.createDocumentFragment();
      const upto = Math.min(loaded.length, rendered + ROWS_AT_ONCE);
      for (; rendered < upto; rendered += 1) frag.append(entryRow(loaded[rendered], links));
      tbody.append(frag);
      moreRows.hidden = rendered >= loaded.length;
    };
    const draw = () => {
      const [from, to] = bounds();
      strip.replaceChildren(lanes(loaded, from, to, (t) => setWindow(t, to - from), tsOf));
    };
    moreRows.addEventListener('click', renderRows);
    async function page() {
      more.disabled = true;
      status.className = 'loading muted';
      status.textContent = 'Loading entries';
      const q = withTenant({ format: 'json', limit: String(pageSize) });
      for (const [name] of FILTERS) if (params.get(name)) q.set(name, params.get(name));
      for (const name of ['origin', 'time']) if (params.get(name)) q.set(name, params.get(name));
      if (cursor) q.set('cursor', cursor);
      try {
        const r = await api('/v1/entries?' + q);
        for (const e of r.entries) loaded.push(e);
        links = linker(loaded);
        // Rows already shown keep their links; new rows get them with every entry loaded.
        renderRows();
        draw();
        cursor = r.next_cursor;
        more.hidden = !cursor;
        status.className = 'muted';
        status.textContent = loaded.length
          ? loaded.length.toLocaleString() + ' entries loaded' + (rendered < loaded.length ? ', ' + rendered.toLocaleString() + ' rows shown' : '') + (cursor ? '; more on the service' : '')
          : 'No entries match these filters.';
        if (!status.dataset.renderMs) status.dataset.renderMs = String(Math.round(performance.now() - routeStarted));
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
  // Downloads (fetched with the token in the header, saved from memory)
  // ---------------------------------------------------------------------------------------
  function save(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function fetchBlob(path) {
    return (await request(path)).blob();
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
    const scope = (kind, value) => '#/scope?' + new URLSearchParams({ [kind]: value, at: e.timestamp, window: '1h', from: e.entry_id });
    const p = e.payload || {};
    show(
      el('h1', { text: e.event_type + ' #' + e.seq }),
      el('nav', { class: 'actions', 'aria-label': 'Incident scope' },
        el('span', { class: 'muted', text: 'Incident scope (±1 h):' }),
        el('a', { href: scope('agent_id', e.agent_id) }, 'this agent'),
        el('a', { href: scope('session_id', e.session_id) }, 'this session'),
        p.trace_id ? el('a', { href: scope('trace_id', p.trace_id) }, 'this trace') : null,
        el('a', { href: '#/timeline?' + new URLSearchParams({ start: new Date(t - 3600e3).toISOString(), end: new Date(t + 3600e3).toISOString() }) }, 'every agent, same hour')),
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

  // A log slice (docs/FORMAT.md §10) checked here: the checkpoint's signature once, then each
  // entry's bytes, identity, selection and audit path to the signed root.
  async function checkSlice(doc, vkey, progress) {
    const checks = [];
    const check = (ok, what) => { checks.push({ ok, what }); if (!ok) throw new Error(what); };
    try {
      if (!window.crypto || !crypto.subtle) throw new Error('this browser has no WebCrypto (use https or localhost)');
      check(doc.type === 'blackbox.log_slice.v1', 'the document is a log slice (blackbox.log_slice.v1)');
      const cp = await openNote(doc.checkpoint, vkey);
      check(true, 'the checkpoint is signed by the checkpoint key (Ed25519)');
      check(cp.origin.endsWith('/' + doc.tenant_id), 'the checkpoint is of this tenant’s chain');
      check(cp.size === doc.tree_size, 'the slice is against the checkpoint’s size (' + cp.size + ')');
      const sel = doc.selection || {};
      const lo = sel.start ? Date.parse(sel.start) : -Infinity;
      const hi = sel.end ? Date.parse(sel.end) : Infinity;
      const seen = new Set();
      for (let i = 0; i < doc.entries.length; i += 1) {
        const x = doc.entries[i];
        const where = 'entry ' + (i + 1) + ' (seq ' + x.seq + ')';
        const hash = toHex(await sha256(enc.encode(x.entry)));
        if ('sha256:' + hash !== x.entry_hash) check(false, where + ': its bytes do not hash to its entry_hash');
        const e = JSON.parse(x.entry);
        if (e.seq !== x.seq || e.tenant_id !== doc.tenant_id || e.entry_id !== x.entry_id) check(false, where + ': another entry than it claims');
        if (seen.has(x.seq)) check(false, where + ': listed twice');
        seen.add(x.seq);
        const t = Date.parse(e.timestamp);
        const p = e.payload || {};
        if ((sel.agent_id && e.agent_id !== sel.agent_id) || (sel.session_id && e.session_id !== sel.session_id) ||
          (sel.trace_id && p.trace_id !== sel.trace_id) || t < lo || t > hi) check(false, where + ': outside the selection');
        const leaf = await sha256(new Uint8Array([0]), fromHex(hash));
        const root = await rootOf(x.seq - 1, doc.tree_size, leaf, x.hashes.map(fromB64));
        if (!same(root, cp.root)) check(false, where + ': its inclusion proof does not lead to the signed root');
        if (progress && i % 200 === 199) progress(i + 1, doc.entries.length);
      }
      check(true, doc.entries.length + ' entries: bytes, identity, selection and inclusion proof each checked');
      return { ok: true, checks, checkpoint: cp };
    } catch (e) {
      if (!checks.length || checks[checks.length - 1].ok) checks.push({ ok: false, what: String(e.message || e) });
      return { ok: false, checks };
    }
  }

  // ---------------------------------------------------------------------------------------
  // Incident scope: what else one agent, session or trace did in a window around a moment
  // ---------------------------------------------------------------------------------------
  const WINDOWS = [['10m', 6e5, '±10 min'], ['1h', 36e5, '±1 h'], ['6h', 216e5, '±6 h'], ['1d', 864e5, '±1 day'], ['7d', 6048e5, '±7 days']];
  const KINDS = [['agent_id', 'agent'], ['session_id', 'session'], ['trace_id', 'trace']];

  function counted(title, map) {
    const rows = [...map.entries()].sort((a, b) => b[1] - a[1]);
    return el('section', { class: 'card', 'aria-label': title },
      el('h2', { text: title }),
      rows.length ? el('dl', {}, rows.map(([k, n]) => [el('dt', { text: k }), el('dd', { text: n.toLocaleString() })]))
        : el('p', { class: 'muted', text: 'none' }));
  }

  async function scopeView(params) {
    const kind = KINDS.find(([k]) => params.get(k));
    if (!kind) { show(el('p', { class: 'error', text: 'Give an agent, a session or a trace.' })); return; }
    const [key, noun] = kind;
    const value = params.get(key);
    const at = Date.parse(params.get('at') || '') || Date.now();
    const win = WINDOWS.find(([w]) => w === params.get('window')) || WINDOWS[1];
    const start = new Date(at - win[1]).toISOString();
    const end = new Date(at + win[1]).toISOString();
    loading('the ' + noun + '’s entries');
    const q = withTenant({ format: 'json', limit: '10000', [key]: value, start, end });
    const r = await api('/v1/entries?' + q);
    const entries = r.entries;
    const count = (f) => {
      const m = new Map();
      for (const e of entries) for (const k of [].concat(f(e) || [])) m.set(k, (m.get(k) || 0) + 1);
      return m;
    };
    const tools = count((e) => (e.event_type === 'tool_call' && e.payload && e.payload.tool_name) || null);
    const classes = count((e) => {
      const p = e.payload || {};
      return (p.result && p.result.data_classification) || p.data_classification || null;
    });
    const decisions = count((e) => (e.payload && e.payload.authorization && e.payload.authorization.decision) || null);
    const alertsBy = count((e) => (e.event_type === 'anomaly_detected' && e.payload && e.payload.rule) || null);
    const types = count((e) => e.event_type);
    const agentsIn = count((e) => e.agent_id);
    const sessionsIn = count((e) => e.session_id);
    const selection = new URLSearchParams(withTenant({ [key]: value, start, end }));
    const base = noun + '-' + value.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
    const msg = el('div', { role: 'status', id: 'slice-status' });
    const csvBtn = el('button', { type: 'button', class: 'secondary' }, 'Download CSV');
    csvBtn.addEventListener('click', async () => {
      try {
        const q = new URLSearchParams(selection);
        q.set('format', 'csv');
        save(await fetchBlob('/v1/entries?' + q), base + '.csv');
      } catch (e) { showError(msg, e); }
    });
    const sliceBtn = el('button', { type: 'button' }, 'Verify and download a log slice');
    sliceBtn.addEventListener('click', async () => {
      sliceBtn.disabled = true;
      msg.replaceChildren(el('p', { class: 'loading muted', text: 'Fetching the slice and its proofs' }));
      try {
        const q = new URLSearchParams(selection);
        q.set('limit', '10000');
        const [doc, key] = await Promise.all([api('/v1/proofs/slice?' + q), api('/v1/checkpoints/key')]);
        const note = el('p', { class: 'loading muted', text: 'Checking ' + doc.entries.length + ' entries in your browser' });
        msg.replaceChildren(note);
        const res = await checkSlice(doc, key.verifier_key, (n, all) => { note.textContent = 'Checked ' + n + ' of ' + all; });
        msg.replaceChildren(el('section', { class: 'proof ' + (res.ok ? 'good' : 'bad') },
          el('h2', { id: 'slice-verdict', class: res.ok ? 'ok' : 'error', text: res.ok ? '✓ Slice verified in your browser' : '✗ Not verified: the slice does not hold' }),
          el('ul', {}, res.checks.map((c) => el('li', { class: c.ok ? 'ok' : 'error', text: (c.ok ? '✓ ' : '✗ ') + c.what }))),
          doc.not_covered ? el('p', { class: 'warn', text: doc.not_covered + ' newer entries are not covered by a checkpoint yet and are not in the slice.' }) : null,
          doc.complete ? null : el('p', { class: 'warn', text: 'The slice stopped at 10,000 entries: narrow the window.' }),
          el('p', { class: 'muted' }, 'Anyone can check the file again offline: ',
            el('code', { text: 'blackbox verify-proof --public-key checkpoint.pub ' + base + '.slice.json' }),
            ' (compare the key’s fingerprint ', el('span', { class: 'mono', text: key.fingerprint }), ').')));
        save(new Blob([JSON.stringify(doc, null, 2) + '\n'], { type: 'application/json' }), base + '.slice.json');
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) msg.replaceChildren(el('p', { class: 'warn', text: 'No checkpoint yet (' + e.message + ').' }));
        else showError(msg, e);
      } finally {
        sliceBtn.disabled = false;
      }
    });
    const windowPick = el('select', { id: 's-window', onchange: (ev) => { const p2 = new URLSearchParams(params); p2.set('window', ev.target.value); location.hash = '#/scope?' + p2; } },
      WINDOWS.map(([w, , label]) => el('option', { value: w, selected: w === win[0] }, label)));
    const { table, tbody } = entryTable('The ' + noun + '’s entries in the window, in claimed-time order.');
    const links = linker(entries);
    const frag = document.createDocumentFragment();
    for (const e of entries.slice(0, ROWS_AT_ONCE)) frag.append(entryRow(e, links));
    tbody.append(frag);
    show(
      el('h1', { text: 'Incident scope — ' + noun + ' ' + value }),
      el('p', { class: 'muted' }, 'What this ' + noun + ' did from ', el('span', { class: 'mono', text: start }), ' to ',
        el('span', { class: 'mono', text: end }), ' (claimed time)',
        params.get('from') ? [' around ', el('a', { href: '#/entry/' + encodeURIComponent(params.get('from')), text: 'the entry you came from' })] : null, '.'),
      el('div', { class: 'filters' }, el('div', {}, el('label', { for: 's-window', text: 'Window' }), windowPick),
        el('a', { href: '#/timeline?' + new URLSearchParams({ [key]: value, start, end }) }, 'Open in the timeline')),
      el('p', { id: 'scope-total' }, el('strong', { text: entries.length.toLocaleString() + ' entries' }),
        ' · ' + agentsIn.size + ' agents · ' + sessionsIn.size + ' sessions · ' + [...alertsBy.values()].reduce((a, b) => a + b, 0) + ' alerts' +
        (r.next_cursor ? ' · more than 10,000: narrow the window' : '')),
      el('div', { class: 'cards' }, counted('Tools called', tools), counted('Data classifications touched', classes),
        counted('Decisions', decisions), counted('Alerts by rule', alertsBy), counted('Event types', types)),
      el('div', { class: 'actions' }, csvBtn, sliceBtn), msg,
      entries.length ? table : el('p', { text: 'Nothing in this window.' }),
      entries.length > ROWS_AT_ONCE ? el('p', { class: 'muted', text: 'The first ' + ROWS_AT_ONCE + ' rows are shown; the CSV and the slice hold them all.' }) : null);
  }

  // ---------------------------------------------------------------------------------------
  // Rules in force and their history
  // ---------------------------------------------------------------------------------------
  async function rules() {
    loading('the rules');
    const r = await api('/v1/rules?' + withTenant());
    const f = r.in_force;
    const field = (k, v, mono) => [el('dt', { text: k }), el('dd', { class: mono ? 'mono' : null, text: v })];
    show(
      el('h1', { text: 'Rules' }),
      f.file === null
        ? el('p', { class: 'warn', text: 'The service runs without a rules file: no detection rule is in force (blackbox serve --rules FILE).' })
        : el('dl', { class: 'fields' },
          field('Rules file', f.file, true), field('SHA-256 (written into every alert)', f.rules_sha256, true),
          field('Time zone of time windows', f.time_zone), field('Webhooks', String(f.webhooks)),
          field('External classifier', f.classifier ? 'configured' : 'none'),
          field('Rules', f.rules.length + (f.rules_hidden ? ' that may apply to this tenant (' + f.rules_hidden + ' others scoped to other tenants)' : ''))),
      f.rules.length ? el('table', {},
        el('caption', { class: 'muted', text: 'The rules in force, in file order.' }),
        el('thead', {}, el('tr', {}, ['Rule', 'Kind', 'Condition', 'Applies to', 'Action', 'Severity', 'Line'].map((c) => el('th', { scope: 'col', text: c })))),
        el('tbody', {}, f.rules.map((x) => el('tr', { class: x.enabled ? null : 'muted' },
          el('td', {}, el('strong', { text: x.name }), x.enabled ? null : ' (disabled)', x.description ? el('div', { class: 'muted', text: x.description }) : null),
          el('td', { text: x.kind }), el('td', { text: x.condition }), el('td', { text: x.scope }),
          el('td', {}, el('span', { class: 'chip' + (x.action === 'block_and_alert' ? ' block' : ''), text: x.action })),
          el('td', { text: x.severity }), el('td', { class: 'mono', text: String(x.line) })))))
        : null,
      el('h2', { text: 'History' }),
      el('p', { class: 'muted', text: 'Every rules file the service put in force, as it recorded it in its own chain (rules_loaded), newest first.' }),
      r.history.length ? el('table', { id: 'rules-history' },
        el('thead', {}, el('tr', {}, ['Loaded at (service)', 'SHA-256', 'Rules (enabled)', 'Webhooks', 'File', 'Record'].map((c) => el('th', { scope: 'col', text: c })))),
        el('tbody', {}, r.history.map((v) => el('tr', {},
          el('td', { class: 'mono', text: v.loaded_at }),
          el('td', { class: 'mono', text: v.rules_sha256.slice(0, 16) + '…' }),
          el('td', { text: v.rules + ' (' + v.enabled + ')' + (v.in_force ? ' · in force' : '') }),
          el('td', { text: String(v.webhooks) }),
          el('td', { class: 'mono', text: v.file }),
          el('td', { class: 'mono', text: v.chain + ' #' + v.seq })))))
        : el('p', { text: 'No rules version recorded.' }),
      r.history_more ? el('p', { class: 'muted', text: 'Older versions are in the service chain (blackbox query --event-type rules_loaded).' }) : null);
  }

  // ---------------------------------------------------------------------------------------
  // Exports: compliance reports and evidence bundles, made by the service
  // ---------------------------------------------------------------------------------------
  const STANDARDS = [['soc2', 'control', 'CC7.2', 'SOC 2 CC7.2'], ['iso27001', 'control', 'A.8.15', 'ISO 27001 A.8.15'],
    ['gdpr', 'article', 'art30', 'GDPR Art. 30'], ['eu-ai-act', 'article', 'art12', 'EU AI Act Art. 12']];
  const TYPES = { pdf: 'application/pdf', json: 'application/json', csv: 'text/csv', jsonl: 'application/x-ndjson', pub: 'text/plain', sig: 'text/plain' };

  async function exportsView() {
    const std = el('select', { id: 'x-standard', name: 'standard' }, STANDARDS.map(([v, , , label]) => el('option', { value: v }, label)));
    const fmt = el('select', { id: 'x-format', name: 'format' }, ['pdf', 'json', 'csv'].map((v) => el('option', { value: v }, v.toUpperCase())));
    const from = el('input', { id: 'x-from', type: 'date' });
    const to = el('input', { id: 'x-to', type: 'date' });
    const subjects = el('input', { id: 'x-subjects', type: 'checkbox' });
    const out = el('div', { role: 'status', id: 'export-status' });
    const query = (extra) => {
      const [standard, kind, which] = STANDARDS.find(([v]) => v === std.value);
      const q = withTenant(Object.assign({ standard, [kind]: which, output: standard + '-report.' + fmt.value }, extra));
      if (from.value || to.value) {
        if (!(from.value && to.value)) throw new Error('Give both ends of the period, or neither (the whole log).');
        q.set('period', from.value + '/' + to.value);
      }
      if (subjects.checked) q.set('include_data_subjects', 'true');
      return q;
    };
    const fileButton = (name, bytes) => el('button', {
      type: 'button', class: 'secondary',
      onclick: () => save(new Blob([bytes], { type: TYPES[name.split('.').pop()] || 'application/octet-stream' }), name),
    }, 'Download ' + name);
    const generate = el('button', { type: 'submit' }, 'Generate report');
    const form = el('form', { class: 'filters' },
      el('div', {}, el('label', { for: 'x-standard', text: 'Standard' }), std),
      el('div', {}, el('label', { for: 'x-format', text: 'Format' }), fmt),
      el('div', {}, el('label', { for: 'x-from', text: 'Period from' }), from),
      el('div', {}, el('label', { for: 'x-to', text: 'to' }), to),
      el('div', {}, el('label', { for: 'x-subjects', text: 'Count data subjects' }), subjects),
      generate);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      generate.disabled = true;
      out.replaceChildren(el('p', { class: 'loading muted', text: 'The service is making the report' }));
      try {
        const r = await api('/v1/exports?' + query({}));
        const s = r.summary;
        const field = (k, v) => [el('dt', { text: k }), el('dd', { text: v })];
        out.replaceChildren(el('section', { class: 'card', 'aria-label': 'Export' },
          el('h2', { text: 'Report for ' + s.tenant_id + ', ' + r.period.start + ' to ' + r.period.end }),
          el('dl', {},
            field('Completeness', s.completeness.toFixed(2) + ' % (' + s.present.toLocaleString() + ' of ' + s.expected.toLocaleString() + ' entries)'),
            field('Integrity', s.integrity),
            field('Anomalies', s.anomalies + ' (' + s.resolved + ' resolved)'),
            field('Retention', s.oldest_age_days + ' days kept, ' + s.required_days + ' required as of ' + s.retention_as_of + (s.retention_met ? ' — met' : ' — NOT met'))),
          el('div', { class: 'actions' },
            r.files.map((f) => fileButton(f.name, fromB64(f.base64))),
            fileButton(r.manifest.name, enc.encode(r.manifest.text))),
          el('p', { class: 'muted', text: 'The manifest is signed with the checkpoint key: blackbox export verify checks the files with the public key alone.' })));
      } catch (e) {
        showError(out, e);
      } finally {
        generate.disabled = false;
      }
    });
    const bundleBtn = el('button', { type: 'button', class: 'secondary' }, 'Download an evidence bundle (.tar)');
    bundleBtn.addEventListener('click', async () => {
      bundleBtn.disabled = true;
      out.replaceChildren(el('p', { class: 'loading muted', text: 'The service is signing a checkpoint and making the bundle' }));
      try {
        const q = query({ bundle: 'true', archive: 'tar' });
        q.set('output', 'report.' + fmt.value);
        const blob = await fetchBlob('/v1/exports?' + q);
        const name = (tenant() || 'tenant') + '-' + std.value + '-bundle.tar';
        save(blob, name);
        out.replaceChildren(el('p', { class: 'ok', id: 'bundle-done', text: '✓ ' + name + ' (' + Math.round(blob.size / 1024) + ' KB): unpack it and run blackbox export reperform DIR --public-key checkpoint.pub' }));
      } catch (e) {
        showError(out, e);
      } finally {
        bundleBtn.disabled = false;
      }
    });
    show(
      el('h1', { text: 'Exports' + (tenant() ? ' — ' + tenant() : '') }),
      el('p', { class: 'muted', text: 'Reports an auditor accepts as they are, made by the service from the log (docs in the README, “Compliance evidence”). Leave the period empty for the whole log.' }),
      form,
      isAdmin() ? el('div', { class: 'actions' }, bundleBtn,
        el('span', { class: 'muted', text: 'A bundle holds the report, the log, a proof for every sampled entry and alert, and a signed manifest: an auditor re-performs it offline.' }))
        : el('p', { class: 'muted', text: 'Evidence bundles hold the service’s own chains and need an admin token.' }),
      out);
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
          el('a', { href: '#/scope?' + new URLSearchParams({ agent_id: a.agent_id, at: a.fired_at, window: '1h', from: a.alert_id }) }, 'incident scope'), ' · ',
          el('a', { href: '#/timeline?' + scope }, 'timeline ±1 h')),
        cell);
    });
    show(
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
        el('td', {}, el('a', { href: '#/timeline?' + new URLSearchParams({ agent_id: a.agent_id, event_type: 'tool_call' }) }, 'recent decisions')),
        cell);
    });
    show(el('h1', { text: 'Agents' }),
      rows.length ? el('table', {},
        el('thead', {}, el('tr', {}, ['Agent', 'Tenant', 'State', 'Paused or throttled', 'Last seen', 'Events', 'Calls', isAdmin() ? 'Action' : '']
          .map((c) => el('th', { scope: 'col', text: c })))),
        el('tbody', {}, rows))
        : el('p', { text: 'No agent has sent anything since the service started.' }));
  }

  // ---------------------------------------------------------------------------------------
  // Routing
  // ---------------------------------------------------------------------------------------
  async function route() {
    routeStarted = performance.now();
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
      else if (path === '/scope') await scopeView(params);
      else if (path === '/rules') await rules();
      else if (path === '/exports') await exportsView();
      else show(el('p', { class: 'error', text: 'No such view: ' + path }));
      document.getElementById('main').focus({ preventScroll: true });
    } catch (e) {
      if (token) showError(view, e);
    }
  }

  window.addEventListener('hashchange', route);
  route();
})();
