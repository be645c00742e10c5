// groundcrew operator page: a task's own page at `#/tasks/{id}`. Its
// request (kind, target, params, triggers), its coalescing (merged into,
// retry of, waiting behind), every attempt with its times, its outcome,
// the artifacts its executions wrote, and its log lines.
//
// Served appended to app.js (see src/web/mod.rs) and built on its
// helpers (api, h, $, ui, act, setTime, timeEl). While the page is open
// it is fetched again every 2 s; it is drawn again only when something
// shown changed, so that keyboard focus on its buttons survives.
'use strict';

const TASK_ROUTE = /^#\/tasks\/(\d+)$/;
const TASK_REFRESH_MS = 2000;
// The daemon's largest entity page: artifacts are found by the task that
// wrote them among these.
const TASK_ENTITIES = 10000;

const taskView = { id: null, timer: null, signature: '' };

// Shows the view the address names: a task's page, or the dashboard.
function showRoute() {
  const m = TASK_ROUTE.exec(location.hash);
  const id = m ? Number(m[1]) : null;
  clearTimeout(taskView.timer);
  taskView.timer = null;
  $('app').classList.toggle('task-view', id !== null);
  $('task-page').hidden = id === null;
  if (id === null) {
    taskView.id = null;
    return;
  }
  if (id !== taskView.id) {
    taskView.id = id;
    taskView.signature = '';
    $('task-title').textContent = `Task #${id}`;
    $('task-body').replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    window.scrollTo(0, 0);
  }
  if (ui.token && ui.role) loadTask(id);
}

async function loadTask(id) {
  if (!ui.token) return; // signed out: start() shows the route again at sign-in
  const session = ui.session;
  let parts;
  try {
    parts = await Promise.all([
      api('GET', `/api/v1/tasks/${id}`),
      api('GET', `/api/v1/tasks/${id}/log`),
      // A daemon without feeds has no artifacts to list.
      api('GET', `/api/v1/entities?limit=${TASK_ENTITIES}`).catch(() => ({ entities: [] })),
    ]);
  } catch (e) {
    if (session !== ui.session || id !== taskView.id) return;
    if (e.status === 401) {
      signOut('The daemon no longer accepts this token.');
      return;
    }
    const text = e.status === 404
      ? `There is no task #${id}: it was removed from the history, or never existed.`
      : `Task #${id} could not be loaded: ${e.message}.`;
    taskView.signature = '';
    $('task-body').replaceChildren(h('p', { class: e.status === 404 ? 'muted' : 'error' }, text));
    scheduleTask(id);
    return;
  }
  if (session !== ui.session || id !== taskView.id) return;
  const [task, log, entities] = parts;
  const artifacts = (entities.entities || []).filter((e) => e && e.task === id);
  const signature = JSON.stringify([task, log.lines, artifacts, ui.role]);
  if (signature !== taskView.signature) {
    taskView.signature = signature;
    $('task-title').textContent = `Task #${id} · ${task.name}`;
    $('task-body').replaceChildren(...taskParts(task, log.lines, artifacts));
  }
  scheduleTask(id);
}

function scheduleTask(id) {
  clearTimeout(taskView.timer);
  taskView.timer = setTimeout(() => taskView.id === id && loadTask(id), TASK_REFRESH_MS);
}

const taskLink = (id) => h('a', { href: `#/tasks/${id}` }, `#${id}`);

const pretty = (value) => h('pre', { class: 'json' }, JSON.stringify(value, null, 2));

// A time as "12 s ago 2026-12-03T10:00:00Z", kept current by tickTimes.
function when(iso) {
  const el = timeEl('t');
  setTime(el, 't', iso);
  return el;
}

function taskParts(t, lines, artifacts) {
  const pending = ['queued', 'running', 'canceling'].includes(t.state);
  const buttons = [];
  if (canOperate() && (t.state === 'failed' || t.state === 'canceled')) {
    buttons.push(h('button', { type: 'button', onclick: (ev) => retryFromPage(ev.currentTarget, t.id) }, 'Retry'));
  }
  if (canOperate() && pending && t.state !== 'canceling') {
    buttons.push(h('button', { type: 'button', onclick: (ev) => cancelFromPage(ev.currentTarget, t.id) }, 'Cancel'));
  }
  const facts = [
    ['State', h('span', { class: `badge state-${t.state}` }, t.state)],
    ['Kind', t.kind],
    ['Target', t.target],
    ['Triggers', t.triggers.join(', ')],
    ['Pool', `${t.pool} (priority ${t.priority})`],
    ['Requested', when(t.created_at)],
    ['Started', t.started_at ? when(t.started_at) : null],
    ['Ended', t.finished_at ? when(t.finished_at) : null],
    ['Not before', t.run_after ? when(t.run_after) : null],
    ['Stage', t.stage],
    ['Progress', t.progress ? `${t.progress.done}/${t.progress.total}` : null],
    ['Merged requests', t.merged > 0 ? String(t.merged) : null],
    ['Merged into', t.merged_into !== null ? taskLink(t.merged_into) : null],
    ['Retry of', t.retry_of !== null && t.retry_of !== undefined ? taskLink(t.retry_of) : null],
    ['Waiting behind', t.waiting_behind !== null ? taskLink(t.waiting_behind) : null],
  ].filter(([, v]) => v !== null && v !== undefined && v !== '');
  const parts = [
    h('div', { class: 'task-head' }, h('a', { href: '#/' }, '← All tasks'), ...buttons),
    h('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
  ];
  if (t.error) parts.push(h('h3', null, 'Error'), h('p', { class: 'error' }, t.error));
  parts.push(h('h3', null, 'Params'), pretty(t.params));
  if (t.result !== null && t.result !== undefined) parts.push(h('h3', null, 'Result'), pretty(t.result));
  parts.push(h('h3', null, `Attempts (${t.attempts})`), attemptList(t));
  parts.push(h('h3', null, `Artifacts written (${artifacts.length})`), artifacts.length
    ? h('ul', { class: 'artifacts' }, ...artifacts.map((a) => h('li', null,
      h('code', null, a.entity), ' ', h('span', { class: `badge status-${a.state}` }, a.state),
      ` · ${a.size} bytes · run ${a.run} · written `, when(a.written_at))))
    : h('p', { class: 'muted small' }, 'None recorded.'));
  parts.push(h('h3', null, `Log (${lines.length} line${lines.length === 1 ? '' : 's'}, the last 200 kept)`),
    lines.length ? logList(lines) : h('p', { class: 'muted small' }, 'Nothing logged.'));
  return parts;
}

// Every attempt: the failed ones with when they ended and why, then the
// last one (running or ended) if it did not fail.
function attemptList(t) {
  const items = t.errors.map((e) => h('li', null,
    h('strong', null, `Attempt ${e.attempt}`), ' failed ', when(e.at), ': ', h('span', { class: 'error' }, e.message)));
  const failedLast = t.errors.some((e) => e.attempt === t.attempts);
  if (t.attempts > 0 && !failedLast) {
    const end = t.finished_at ? [` · ${t.state} `, when(t.finished_at)] : [` · ${t.state}`];
    items.push(h('li', null, h('strong', null, `Attempt ${t.attempts}`),
      t.started_at ? [' started ', when(t.started_at)] : null, ...end));
  }
  if (items.length) return h('ol', { class: 'attempts' }, ...items);
  const never = ['queued', 'running', 'canceling'].includes(t.state) ? 'Not started yet.' : 'Never started.';
  return h('p', { class: 'muted small' }, never);
}

function logList(lines) {
  return h('ol', { class: 'log' }, ...lines.map((l) => h('li', { class: `log-${l.level}` },
    h('time', { datetime: l.time, title: l.time }, l.time.replace(/^.*T|Z$/g, '')), ' ',
    h('span', { class: 'level' }, l.level), ' ',
    h('span', { class: 'source' }, l.source), ' ',
    h('span', { class: 'message' }, l.message))));
}

async function retryFromPage(button, id) {
  await act(button, async () => {
    const r = await api('POST', `/api/v1/tasks/${id}/retry`);
    return r.outcome === 'merged'
      ? `Retry of #${id} merged into task #${r.id}.`
      : `Retry of #${id} queued as task #${r.id}.`;
  });
  loadTask(id);
}

async function cancelFromPage(button, id) {
  await act(button, async () => {
    const r = await api('DELETE', `/api/v1/tasks/${id}`);
    return r.state === 'canceling' ? `Cancel of #${id} signaled.` : `Task #${id} canceled.`;
  });
  loadTask(id);
}

window.addEventListener('hashchange', showRoute);
