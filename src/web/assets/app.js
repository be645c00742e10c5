// groundcrew operator page: the live background-work panel, the task
// lists and the operator actions, on top of the admin API.
//
// Plain browser JavaScript with no build step and no dependencies; the
// daemon embeds this file and serves it under a `default-src 'self'`
// policy, so everything here is built with DOM calls (never innerHTML:
// task names, errors and results come from the server and are shown as
// text only).
//
// Data flow:
// - The token lives in sessionStorage (this tab only) and goes out as
//   `Authorization: Bearer` on every fetch. EventSource cannot send
//   headers, so the event stream alone gets it as `?token=`.
// - The panel arrives by server-sent events from /api/v1/panel/events; if
//   the stream fails the page polls /api/v1/panel every 2 s and tries the
//   stream again now and then.
// - Any failure to get the panel shows "Missing / broken status" and hides
//   the last panel, so that a dead daemon can never look Idle.
'use strict';

const TOKEN_KEY = 'groundcrew.token';
const POLL_MS = 2000; // panel polling when the event stream is unavailable
const SSE_RETRY_MS = 10000; // how long to poll before trying the stream again
const LISTS_MS = 5000; // task lists refresh at least this often
const LIST_LIMIT = 20; // tasks shown per list
const ENTITY_RE = /^[a-z][a-z0-9_]*:[A-Za-z0-9_-]+$/; // as the daemon checks it

const ui = {
  token: sessionStorage.getItem(TOKEN_KEY),
  name: null,
  role: null,
  source: null, // the EventSource while the live stream is open
  pollTimer: null,
  listsTimer: null,
  sseFailedAt: 0,
  lastGood: null, // Date.now() of the last panel received
  panelKey: '', // running and pending ids, to refresh lists only on change
  lists: { busy: false, again: false },
  session: 0, // bumped at sign-in and sign-out; answers from an older session are dropped
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status; // 0: the daemon could not be reached
    this.code = code;
  }
}

// One API call; resolves to the JSON body (null for 204), rejects with
// ApiError carrying the API's own code and message.
async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + ui.token };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', 'the daemon cannot be reached');
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    // Not JSON: a proxy's error page, or a truncated answer.
  }
  if (!res.ok) {
    const err = data && data.error;
    throw new ApiError(res.status, err ? err.code : 'http_' + res.status,
      err ? err.message : `HTTP ${res.status} ${res.statusText}`);
  }
  if (data === null) throw new ApiError(res.status, 'invalid_answer', 'the answer is not JSON');
  return data;
}

const canOperate = () => ui.role === 'operate';

// ---------------------------------------------------------------- DOM helpers

// h('li', {class: 'x', onclick: f}, 'text', child): an element with
// attributes, listeners and children (strings become text nodes).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// The element of `root` marked data-f="name".
const field = (root, name) => root.querySelector(`[data-f="${name}"]`);

function setText(root, name, text) {
  const el = field(root, name);
  if (el && el.textContent !== text) el.textContent = text;
}

// Keeps one element per key across updates, so that a keyboard user's
// focus (on a Cancel button, say) survives the panel changing several
// times a second, and only what changed is touched.
function reconcile(list, items, key, create, update) {
  const old = new Map([...list.children].map((el) => [el.dataset.key, el]));
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    let el = old.get(k);
    if (el) {
      old.delete(k);
    } else {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    // Move only what is out of place: moving a focused element blurs it.
    const want = prev ? prev.nextSibling : list.firstChild;
    if (el !== want) list.insertBefore(el, want);
    prev = el;
  }
  for (const el of old.values()) el.remove();
}

// ---------------------------------------------------------------- time

function duration(s) {
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function relative(iso) {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  // A few seconds of clock skew between browser and daemon must not show
  // a start "in 2 s".
  if (s > -5) return `${duration(Math.max(0, s))} ago`;
  return `in ${duration(-s)}`;
}

// "12 s ago" (kept current by tickTimes) and the absolute UTC time, small.
function timeEl(name) {
  return h('span', { class: 'when' },
    h('time', { 'data-f': name, 'data-rel': '' }), ' ',
    h('span', { class: 'abs', 'data-f': name + '-abs' }));
}

function setTime(root, name, iso) {
  const t = field(root, name);
  if (!iso) {
    t.textContent = '—';
    t.removeAttribute('datetime');
    setText(root, name + '-abs', '');
    return;
  }
  t.dateTime = iso;
  t.title = iso;
  t.textContent = relative(iso);
  setText(root, name + '-abs', iso.replace(/\.\d+Z$/, 'Z'));
}

function tickTimes() {
  for (const t of document.querySelectorAll('time[data-rel][datetime]')) {
    const text = relative(t.dateTime);
    if (t.textContent !== text) t.textContent = text;
  }
  if (ui.lastGood && !$('broken').hidden) {
    $('broken-since').textContent = `Last good update ${duration(Math.round((Date.now() - ui.lastGood) / 1000))} ago.`;
  }
}

// ---------------------------------------------------------------- panel

function showPanel(panel) {
  ui.lastGood = Date.now();
  $('broken').hidden = true;
  $('panel-body').hidden = false;
  $('history').hidden = false;
  $('history-broken').hidden = true;

  const active = panel.state === 'active';
  const state = $('state');
  state.className = 'state ' + (active ? 'state-active' : 'state-idle');
  const detail = active
    ? `${panel.running.length} running, ${panel.pending_total} waiting · ${panel.workers.active}/${panel.workers.limit} workers`
    : 'nothing running or waiting';
  const text = `${active ? 'Active' : 'Idle'} — ${detail}`;
  // Rewritten only on change: aria-live announces every write.
  if (state.textContent !== text) {
    state.replaceChildren(h('strong', null, active ? 'Active' : 'Idle'), ` — ${detail}`);
  }

  // The store refusing writes: nothing is admitted or accepted meanwhile.
  const store = panel.store || { ok: true };
  const failing = $('store-failing');
  failing.hidden = store.ok;
  const storeText = store.ok ? ''
    : `Task store failing: ${store.error || 'writes fail'}. Nothing is admitted and requests are refused until it writes again.`;
  if (failing.textContent !== storeText) failing.textContent = storeText;

  reconcile($('pools'), panel.pools, (p) => p.name, createPool, updatePool);
  reconcile($('running'), panel.running, (t) => t.id, createRunning, updateRunning);
  reconcile($('pending'), panel.pending, (t) => t.id, createPending, updatePending);
  $('running-count').textContent = `(${panel.running.length})`;
  const shown = panel.pending.length;
  $('pending-count').textContent = shown < panel.pending_total
    ? `(${shown} of ${panel.pending_total} shown)` : `(${panel.pending_total})`;

  // Task lists change when tasks start or appear, and when an end is
  // recorded (a task leaves the running list a moment before), not on
  // progress.
  const key = [panel.running.map((t) => t.id).join(','), panel.pending.map((t) => t.id).join(','),
    panel.store.recorded_ends].join('|');
  if (key !== ui.panelKey) {
    ui.panelKey = key;
    refreshLists();
  }
  statsOnEnds(panel.store.recorded_ends); // charts.js
}

// Nothing from the last good panel stays visible: a stale "Idle" would
// be exactly the lie this state exists to prevent.
function showBroken(why) {
  const state = $('state');
  state.className = 'state state-broken';
  if (state.textContent !== 'Missing / broken status') state.textContent = 'Missing / broken status';
  $('broken').hidden = false;
  $('panel-body').hidden = true;
  // The lists came from the same daemon: "No pending tasks" would mislead.
  $('history').hidden = true;
  $('history-broken').hidden = false;
  ui.panelKey = ''; // refresh the lists as soon as a panel arrives again
  statsBroken(); // charts.js
  $('broken-why').textContent = `The panel could not be loaded: ${why}.`;
  $('broken-since').textContent = ui.lastGood ? '' : 'No panel received yet.';
  tickTimes();
}

function createPool(p) {
  const row = h('tr', null,
    h('th', { scope: 'row', 'data-f': 'name' }),
    h('td', null,
      h('span', { 'data-f': 'workers' }), ' ',
      h('meter', { 'data-f': 'meter', min: 0, 'aria-label': `workers in use in pool ${p.name}` })),
    h('td', { 'data-f': 'pending' }));
  if (canOperate()) {
    const input = h('input', {
      type: 'number', min: 0, max: 4096, required: true, class: 'limit',
      'aria-label': `Worker limit for pool ${p.name}`, 'data-f': 'limit',
    });
    const form = h('form', { class: 'inline', onsubmit: (ev) => setLimit(ev, p.name, input) },
      input, h('button', { type: 'submit' }, 'Set'));
    row.append(h('td', null, form));
  }
  return row;
}

function updatePool(row, p) {
  setText(row, 'name', p.name);
  const cluster = p.cluster_limit == null ? '' : ` (at most ${p.cluster_limit} on all nodes)`;
  setText(row, 'workers', `${p.active} / ${p.limit}${cluster}`);
  const meter = field(row, 'meter');
  meter.max = Math.max(p.limit, 1);
  meter.value = p.active;
  setText(row, 'pending', String(p.pending));
  const input = field(row, 'limit');
  // Never overwrite what the operator is typing.
  if (input && document.activeElement !== input && row.dataset.limit !== String(p.limit)) {
    input.value = p.limit;
  }
  row.dataset.limit = String(p.limit);
}

function cancelButton(t) {
  if (!canOperate()) return null;
  return h('button', {
    type: 'button', class: 'small-btn', 'aria-label': `Cancel ${t.name} (#${t.id})`,
    onclick: (ev) => cancelTask(ev.currentTarget, t.id),
  }, 'Cancel');
}

function triggers(t) {
  return t.triggers.length > 1 ? t.triggers.join(' + ') : t.trigger;
}

function createRunning(t) {
  return h('li', { class: 'task running' },
    h('div', { class: 'task-head' },
      h('span', { class: 'name', 'data-f': 'name' }),
      h('a', { class: 'muted', href: `#/tasks/${t.id}`, 'aria-label': `task #${t.id}` }, `#${t.id}`),
      h('span', { class: 'badge', 'data-f': 'trigger', title: 'trigger' }),
      cancelButton(t)),
    h('div', { class: 'small' },
      'Stage ', h('strong', { 'data-f': 'stage' }), ' · started ', timeEl('started')),
    h('div', { class: 'progress', 'data-f': 'progress' },
      h('progress', { 'data-f': 'bar', 'aria-label': `progress of ${t.name}` }),
      h('span', { class: 'small', 'data-f': 'count' })));
}

function updateRunning(li, t) {
  setText(li, 'name', t.name);
  setText(li, 'trigger', triggers(t));
  setText(li, 'stage', t.state === 'canceling' ? 'canceling…' : (t.stage || 'starting'));
  setTime(li, 'started', t.started_at);
  const box = field(li, 'progress');
  // The bar is shown only when the task reports a total.
  box.hidden = !t.progress;
  if (t.progress) {
    const bar = field(li, 'bar');
    bar.max = t.progress.total;
    bar.value = t.progress.done;
    const pct = Math.floor((100 * t.progress.done) / t.progress.total);
    setText(li, 'count', `${t.progress.done}/${t.progress.total} (${pct}%)`);
  }
}

function createPending(t) {
  return h('li', { class: 'task pending' },
    h('div', { class: 'task-head' },
      h('span', { class: 'name', 'data-f': 'name' }),
      h('a', { class: 'muted', href: `#/tasks/${t.id}`, 'aria-label': `task #${t.id}` }, `#${t.id}`),
      h('span', { class: 'badge', 'data-f': 'trigger', title: 'trigger' }),
      cancelButton(t)),
    h('div', { class: 'small' },
      h('span', { class: 'wait', 'data-f': 'wait' }),
      h('span', { 'data-f': 'merged' }),
      ' · requested ', timeEl('created')));
}

function updatePending(li, t) {
  setText(li, 'name', t.name);
  setText(li, 'trigger', triggers(t));
  let wait = 'queued';
  if (t.waiting_behind !== null) wait = `waiting behind #${t.waiting_behind}`;
  else if (t.run_after) wait = `retry after ${t.run_after.replace(/\.\d+Z$/, 'Z')}`;
  setText(li, 'wait', wait);
  li.classList.toggle('follow-up', t.waiting_behind !== null);
  setText(li, 'merged', t.merged > 0
    ? ` · ${t.merged} merged request${t.merged === 1 ? '' : 's'}` : '');
  setTime(li, 'created', t.created_at);
}

// ---------------------------------------------------------------- live feed

function stopFeed() {
  if (ui.source) ui.source.close();
  ui.source = null;
  clearTimeout(ui.pollTimer);
  ui.pollTimer = null;
}

function setFeed(text) {
  $('feed').textContent = text;
}

function connect() {
  stopFeed();
  if (!window.EventSource) {
    startPolling();
    return;
  }
  const session = ui.session;
  const source = new EventSource('/api/v1/panel/events?token=' + encodeURIComponent(ui.token));
  ui.source = source;
  source.addEventListener('panel', (ev) => {
    if (session !== ui.session) return;
    setFeed('Live');
    try {
      showPanel(JSON.parse(ev.data));
    } catch (e) {
      showBroken('the daemon sent a panel this page cannot read');
    }
  });
  source.onerror = () => {
    // EventSource would retry by itself, but it cannot say why it failed
    // (daemon gone, token refused, shutting down). Polling can, and it
    // decides what the page shows; the stream is tried again later.
    if (session !== ui.session) return;
    source.close();
    ui.source = null;
    ui.sseFailedAt = Date.now();
    startPolling();
  };
}

function startPolling() {
  clearTimeout(ui.pollTimer);
  setFeed(`Polling every ${POLL_MS / 1000} s`);
  pollOnce();
}

async function pollOnce() {
  const session = ui.session;
  try {
    const panel = await api('GET', '/api/v1/panel');
    if (session !== ui.session) return;
    showPanel(panel);
    // The stream may have failed only because the daemon restarted.
    if (window.EventSource && Date.now() - ui.sseFailedAt > SSE_RETRY_MS) {
      connect();
      return;
    }
  } catch (e) {
    if (session !== ui.session) return;
    if (e.status === 401) {
      signOut('The daemon no longer accepts this token.');
      return;
    }
    showBroken(e.message);
  }
  ui.pollTimer = setTimeout(pollOnce, POLL_MS);
}

// An immediate panel fetch after an action, whatever the feed does, so
// that a task started here shows at once.
async function refreshPanel() {
  const session = ui.session;
  try {
    const panel = await api('GET', '/api/v1/panel');
    if (session === ui.session) showPanel(panel);
  } catch (e) {
    if (session === ui.session) showBroken(e.message);
  }
}

// ---------------------------------------------------------------- task lists

const LISTS = [
  { status: 'pending', action: 'Cancel' },
  { status: 'failed', action: 'Delete' },
  { status: 'finished', action: 'Delete' },
];

// Fetches the three lists; calls that arrive while one is in flight
// collapse into one more round after it.
async function refreshLists() {
  if (ui.lists.busy) {
    ui.lists.again = true;
    return;
  }
  ui.lists.busy = true;
  const session = ui.session;
  loadFeeds(session);
  try {
    const pages = await Promise.all(LISTS.map((l) =>
      api('GET', `/api/v1/tasks?status=${l.status}&limit=${LIST_LIMIT}`)));
    if (session !== ui.session) return;
    LISTS.forEach((l, i) => showList(l, pages[i]));
  } catch (e) {
    if (session === ui.session) {
      for (const l of LISTS) $(`list-${l.status}-count`).textContent = '(unavailable)';
    }
  } finally {
    ui.lists.busy = false;
    clearTimeout(ui.listsTimer);
    if (session === ui.session) {
      ui.listsTimer = setTimeout(refreshLists, LISTS_MS);
      if (ui.lists.again) {
        ui.lists.again = false;
        refreshLists();
      }
    }
  }
}

function showList(list, page) {
  const ul = $(`list-${list.status}`);
  // Items are rebuilt only when something shown changed.
  reconcile(ul, page.tasks, (t) => t.id, () => h('li', { class: 'task' }), (li, t) => {
    const signature = JSON.stringify([t.state, t.stage, t.progress, t.error, t.result, t.finished_at, t.waiting_behind, t.merged]);
    if (li.dataset.signature === signature) return;
    li.dataset.signature = signature;
    li.replaceChildren(...historyItem(list, t));
  });
  $(`list-${list.status}-count`).textContent = page.total > page.tasks.length
    ? `(${page.tasks.length} of ${page.total})` : `(${page.total})`;
}

function historyItem(list, t) {
  const parts = [
    h('div', { class: 'task-head' },
      h('span', { class: 'name' }, t.name),
      h('a', { class: 'muted', href: `#/tasks/${t.id}`, 'aria-label': `task #${t.id}` }, `#${t.id}`),
      h('span', { class: `badge state-${t.state}` }, t.state),
      canOperate() && (t.state === 'failed' || t.state === 'canceled') ? h('button', {
        type: 'button', class: 'small-btn', 'aria-label': `Retry ${t.name} (#${t.id})`,
        onclick: (ev) => retryTask(ev.currentTarget, t.id),
      }, 'Retry') : null,
      canOperate() ? h('button', {
        type: 'button', class: 'small-btn', 'aria-label': `${list.action} ${t.name} (#${t.id})`,
        onclick: (ev) => (list.action === 'Cancel' ? cancelTask(ev.currentTarget, t.id) : deleteTask(ev.currentTarget, t.id)),
      }, list.action) : null),
  ];
  const when = t.finished_at || t.started_at || t.created_at;
  const label = t.finished_at ? 'ended' : t.started_at ? 'started' : 'requested';
  const line = h('div', { class: 'small' }, `trigger ${triggers(t)} · ${label} `, timeEl('when'));
  setTime(line, 'when', when);
  if (t.waiting_behind !== null) line.append(` · waiting behind #${t.waiting_behind}`);
  if (t.merged_into !== null) line.append(` · merged into #${t.merged_into}`);
  if (t.retry_of !== null && t.retry_of !== undefined) line.append(` · retry of #${t.retry_of}`);
  parts.push(line);
  if (t.error) parts.push(h('div', { class: 'error small' }, t.error));
  if (t.result !== null && t.result !== undefined) {
    parts.push(h('code', { class: 'result small' }, JSON.stringify(t.result)));
  }
  return parts;
}

// ---------------------------------------------------------------- actions

function notify(text, isError) {
  const n = $('notice');
  n.className = isError ? 'notice error' : 'notice';
  n.textContent = text;
}

// Runs one operator action: the button is disabled only while its own
// request is in flight, so the page never blocks on a running task.
async function act(button, work) {
  if (button) button.disabled = true;
  try {
    const message = await work();
    if (message) notify(message, false);
  } catch (e) {
    if (e.status === 401) {
      signOut('The daemon no longer accepts this token.');
      return;
    }
    notify(e.message, true);
  } finally {
    if (button) button.disabled = false;
  }
  refreshPanel();
  refreshLists();
}

function describeReply(r) {
  if (r.outcome === 'merged') return `merged into #${r.id}`;
  if (r.outcome === 'follow_up') return `#${r.id} waiting behind #${r.behind}`;
  return `#${r.id} queued`;
}

function startTest(ev) {
  ev.preventDefault();
  const body = {
    kind: 'test',
    target: $('test-target').value.trim(),
    params: { times: Number($('test-times').value), round_ms: Number($('test-round').value) },
  };
  act(ev.submitter, async () => {
    const r = await api('POST', '/api/v1/tasks', body);
    return `Test task ${body.target}: ${describeReply(r)}.`;
  });
}

function rebuildAll(ev) {
  if (!window.confirm('Rebuild every entity?')) return;
  act(ev.currentTarget, async () => {
    const r = await api('POST', '/api/v1/rebuild', { all: true });
    return `Rebuild all: ${r.tasks.map(describeReply).join(', ')}.`;
  });
}

function rebuildSelected(ev) {
  ev.preventDefault();
  const typed = $('rebuild-targets').value.split(/[\s,]+/).filter(Boolean);
  const checked = [...document.querySelectorAll('#entity-list input:checked')].map((c) => c.value);
  const targets = [...new Set([...checked, ...typed])];
  if (targets.length === 0) {
    notify('Name or tick at least one entity to rebuild.', true);
    return;
  }
  const bad = targets.filter((t) => !ENTITY_RE.test(t));
  if (bad.length) {
    notify(`Not entity names (class:id, e.g. country:DE): ${bad.join(', ')}`, true);
    return;
  }
  act(ev.submitter, async () => {
    const r = await api('POST', '/api/v1/rebuild', { targets });
    const refused = r.tasks.filter((t) => t.error);
    const accepted = r.tasks.filter((t) => !t.error);
    $('rebuild-targets').value = '';
    for (const c of document.querySelectorAll('#entity-list input:checked')) c.checked = false;
    let text = `Rebuild of ${accepted.length} entit${accepted.length === 1 ? 'y' : 'ies'}: ` +
      accepted.map((t) => `${t.target} ${describeReply(t)}`).join(', ') + '.';
    if (refused.length) text += ` Refused: ${refused.map((t) => `${t.target} (${t.error.message})`).join(', ')}.`;
    return text;
  });
}

function setLimit(ev, pool, input) {
  ev.preventDefault();
  const limit = Number(input.value);
  act(ev.submitter, async () => {
    const r = await api('PUT', `/api/v1/pools/${encodeURIComponent(pool)}/limit`, { limit });
    return `Pool ${r.name}: worker limit ${r.limit}.`;
  });
}

function cancelTask(button, id) {
  act(button, async () => {
    const r = await api('DELETE', `/api/v1/tasks/${id}`);
    if (r === null) return `Task #${id} removed.`;
    const also = r.canceled_follow_ups.length ? ` (and follow-up ${r.canceled_follow_ups.map((f) => '#' + f).join(', ')})` : '';
    if (r.state !== 'canceling') return `Task #${id} canceled${also}.`;
    const hard = typeof r.grace_s === 'number' ? ` (stopped hard after ${r.grace_s} s)` : '';
    return `Cancel of #${id} signaled${also}; canceled once its run has ended${hard}.`;
  });
}

function retryTask(button, id) {
  act(button, async () => {
    const r = await api('POST', `/api/v1/tasks/${id}/retry`);
    return r.outcome === 'merged'
      ? `Retry of #${id} merged into task #${r.id}.`
      : `Retry of #${id} queued as task #${r.id}.`;
  });
}

function deleteTask(button, id) {
  act(button, async () => {
    await api('DELETE', `/api/v1/tasks/${id}`);
    return `Task #${id} removed from the history.`;
  });
}

// ---------------------------------------------------------------- feeds

// Unhealthy feeds, and why: a reading refused by the feed's guard keeps
// the previous content in force until an operator accepts it (API/CLI).
async function loadFeeds(session) {
  let data;
  try {
    data = await api('GET', '/api/v1/feeds');
  } catch (e) {
    return;
  }
  if (session !== ui.session) return;
  const unhealthy = (data.feeds || []).filter((f) => f && f.healthy === false);
  $('feed-warnings').replaceChildren(...unhealthy.map((f) => h('p', { 'data-feed': f.name },
    h('strong', null, `Feed ${f.name} is unhealthy`), ': ',
    typeof f.refused === 'string'
      ? `reading refused (${f.refused}); the previous content stays in force until it is accepted.`
      : 'marked unhealthy; its changes are held back.')));
  $('feed-warnings').hidden = unhealthy.length === 0;
}

// ---------------------------------------------------------------- entities

// The daemon lists entities needing repair first; the page keeps that
// order and shows at most this many.
const ENTITIES_SHOWN = 200;

// The integrity list: every entity's artifact state (missing, corrupt,
// stale, orphaned, ok). A daemon without feeds answers an empty list or
// 404, and the page offers only the typed list.
async function loadEntities() {
  let data;
  try {
    data = await api('GET', `/api/v1/entities?limit=${ENTITIES_SHOWN}`);
  } catch (e) {
    $('entities').hidden = true;
    return;
  }
  const entities = (data.entities || []).filter((e) => typeof e.entity === 'string');
  $('entity-list').replaceChildren(...entities.map((e, i) => h('li', null,
    h('input', { type: 'checkbox', id: `entity-${i}`, value: e.entity }),
    h('label', { for: `entity-${i}` }, e.entity, ' ', h('span', { class: `badge status-${e.state}` }, e.state)))));
  $('entities').hidden = entities.length === 0;
}

// ---------------------------------------------------------------- session

function showLogin(message) {
  $('app').hidden = true;
  $('who').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  const state = $('state');
  state.className = 'state state-loading';
  state.textContent = 'Signed out';
  setFeed('');
  $('token').focus();
}

function signOut(message) {
  ui.session += 1;
  stopFeed();
  clearTimeout(ui.listsTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  ui.token = null;
  ui.role = null;
  showLogin(message);
}

// Applies the role: a read token gets no operator controls at all (they
// are not rendered, not merely hidden by style).
function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = `${ui.name} (${ui.role})`;
  for (const el of document.querySelectorAll('.op')) el.hidden = !canOperate();
  // Rows hold role-dependent buttons, so they are rebuilt for the new role.
  for (const id of ['pools', 'running', 'pending', 'list-pending', 'list-failed', 'list-finished']) {
    $(id).replaceChildren();
  }
}

async function start() {
  if (!ui.token) {
    showLogin();
    return;
  }
  const session = ++ui.session;
  try {
    const me = await api('GET', '/api/v1/whoami');
    if (session !== ui.session) return;
    ui.name = me.name;
    ui.role = me.role;
  } catch (e) {
    if (session !== ui.session) return;
    if (e.status === 401) {
      signOut('That token is not accepted.');
      return;
    }
    // The daemon is down or broken: say so, and keep trying.
    $('login').hidden = true;
    $('app').hidden = false;
    showBroken(e.message);
    setTimeout(() => session === ui.session && start(), POLL_MS);
    return;
  }
  showApp();
  connect();
  refreshLists();
  if (canOperate()) loadEntities();
  showRoute(); // task.js: a task's own page, when the address names one
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    ui.token = token;
    $('token').value = '';
    start();
  });
  $('logout').addEventListener('click', () => signOut('Signed out.'));
  $('test-form').addEventListener('submit', startTest);
  $('rebuild-all').addEventListener('click', rebuildAll);
  $('rebuild-form').addEventListener('submit', rebuildSelected);
  setInterval(tickTimes, 1000);
  start();
});
