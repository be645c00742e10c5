// groundcrew operator page: the history charts. Tasks ended per bucket
// (succeeded, failed, canceled, stacked) and queue wait and run time p50
// and p95, for all tasks or one kind and pool, over the last hour or day,
// from GET /api/v1/stats, drawn as inline SVG with DOM calls (no chart
// library, nothing fetched from elsewhere).
//
// Loaded after app.js, whose helpers it uses (api, h, $, ui). The charts
// are fetched again when the panel's `store.recorded_ends` changes (a task
// ended), at most once a second, and every STATS_MS regardless, since the
// buckets move on with the clock.
'use strict';

const STATS_MS = 15000; // refetch at least this often
const STATS_GAP_MS = 1000; // and at most this often on task ends
const SVG_NS = 'http://www.w3.org/2000/svg';
const CHART = { width: 340, height: 150, left: 48, right: 6, top: 10, bottom: 22 };
const OUTCOMES = ['succeeded', 'failed', 'canceled'];

const charts = {
  window: '1h',
  series: '', // "kind\npool", or '' for all tasks
  ends: null, // the last recorded_ends seen
  busy: false,
  again: false,
  timer: null,
  lastFetch: 0,
};

// s('rect', {x: 1}, child): an SVG element, as h() builds HTML ones.
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// Called by showPanel with every panel: a changed count of recorded ends
// means the history changed.
function statsOnEnds(recordedEnds) {
  if (recordedEnds === charts.ends) return;
  charts.ends = recordedEnds;
  refreshStats();
}

// Fetches the window and redraws; calls while one is in flight, or within
// STATS_GAP_MS of the last, collapse into one more round.
async function refreshStats() {
  if (!ui.token) return;
  const wait = charts.lastFetch + STATS_GAP_MS - Date.now();
  if (charts.busy || wait > 0) {
    charts.again = true;
    if (!charts.busy) {
      clearTimeout(charts.timer);
      charts.timer = setTimeout(refreshStats, wait);
    }
    return;
  }
  charts.busy = true;
  charts.again = false;
  charts.lastFetch = Date.now();
  const session = ui.session;
  try {
    const stats = await api('GET', `/api/v1/stats?window=${charts.window}`);
    if (session === ui.session) showStats(stats);
  } catch (e) {
    if (session === ui.session) clearCharts(`History unavailable: ${e.message}.`);
  } finally {
    charts.busy = false;
    clearTimeout(charts.timer);
    if (session === ui.session && ui.token) {
      charts.timer = setTimeout(refreshStats, charts.again ? STATS_GAP_MS : STATS_MS);
    }
  }
}

// No stale chart stays up while the daemon cannot be asked.
function clearCharts(why) {
  for (const id of ['chart-ends', 'chart-wait', 'chart-duration']) $(id).replaceChildren();
  $('stats-summary').textContent = why;
}

// Called by showBroken: the charts came from the same daemon as the panel.
function statsBroken() {
  charts.ends = null; // fetched again with the next panel
  clearCharts('History is unavailable while the panel cannot be loaded.');
}

function chooseWindow(win) {
  charts.window = win;
  for (const w of ['1h', '24h']) $(`stats-${w}`).setAttribute('aria-pressed', String(w === win));
  charts.lastFetch = 0;
  refreshStats();
}

function showStats(stats) {
  // The kind and pool choices: every series of the window, the chosen one
  // kept while it has data.
  const select = $('stats-series');
  const keys = stats.series.map((x) => `${x.kind}\n${x.pool}`);
  if (charts.series && !keys.includes(charts.series)) charts.series = '';
  const options = [h('option', { value: '' }, 'All tasks'),
    ...stats.series.map((x, i) => h('option', { value: keys[i] }, `${x.kind} · ${x.pool}`))];
  const signature = keys.join('|');
  if (select.dataset.signature !== signature) {
    select.dataset.signature = signature;
    select.replaceChildren(...options);
  }
  select.value = charts.series;

  const chosen = stats.series[keys.indexOf(charts.series)];
  const buckets = chosen ? chosen.buckets : stats.total;
  const per = stats.bucket_seconds === 60 ? 'minute' : `${stats.bucket_seconds / 60} minutes`;
  const span = stats.window === '1h' ? 'last hour' : 'last 24 hours';
  const sums = OUTCOMES.map((o) => buckets.reduce((n, b) => n + b[o], 0));
  const who = chosen ? `${chosen.kind} (${chosen.pool})` : 'All tasks';
  $('stats-summary').textContent = sums[0] + sums[1] + sums[2] === 0
    ? `No task ended in the ${span}.`
    : `${who}, ${span}: ${sums[0]} succeeded, ${sums[1]} failed, ${sums[2]} canceled.`;
  $('chart-ends-title').textContent = `Ended per ${per}`;
  $('chart-ends').replaceChildren(endsChart(buckets, `Tasks ended per ${per}, ${span}`));
  $('chart-wait').replaceChildren(percentileChart(buckets, 'queue_wait', `Queue wait p50 and p95, ${span}`));
  $('chart-duration').replaceChildren(percentileChart(buckets, 'duration', `Run time p50 and p95, ${span}`));
}

// ---------------------------------------------------------------- drawing

const plotWidth = () => CHART.width - CHART.left - CHART.right;
const plotHeight = () => CHART.height - CHART.top - CHART.bottom;

// "14:05" in UTC, as the page's absolute times are.
const clock = (iso) => iso.slice(11, 16);

function seconds(x) {
  if (x < 1) return `${Math.round(x * 1000)} ms`;
  if (x < 60) return `${x < 10 ? x.toFixed(1) : Math.round(x)} s`;
  if (x < 3600) return `${(x / 60).toFixed(1)} min`;
  return `${(x / 3600).toFixed(1)} h`;
}

// The chart's frame: an SVG with its accessible name, three horizontal
// grid lines labelled by `label`, and time labels: the start of the
// first and the middle bucket, and "now" at the end.
function frame(buckets, max, label, name) {
  const svg = s('svg', {
    viewBox: `0 0 ${CHART.width} ${CHART.height}`, class: 'chart', role: 'img', 'aria-label': name,
  }, s('title', null, name));
  for (const f of [0, 0.5, 1]) {
    const y = CHART.top + plotHeight() * (1 - f);
    svg.append(s('line', { x1: CHART.left, x2: CHART.width - CHART.right, y1: y, y2: y, class: 'grid' }),
      s('text', { x: CHART.left - 4, y: y + 4, class: 'axis', 'text-anchor': 'end' }, label(max * f)));
  }
  const bw = plotWidth() / buckets.length;
  for (const i of [0, Math.floor(buckets.length / 2), buckets.length - 1]) {
    const anchor = i === 0 ? 'start' : i === buckets.length - 1 ? 'end' : 'middle';
    const x = CHART.left + bw * (anchor === 'end' ? i + 1 : i);
    svg.append(s('text', { x, y: CHART.height - 6, class: 'axis', 'text-anchor': anchor },
      anchor === 'end' ? 'now' : `${clock(buckets[i].start)}${i === 0 ? ' UTC' : ''}`));
  }
  return svg;
}

function endsChart(buckets, name) {
  const totals = buckets.map((b) => b.succeeded + b.failed + b.canceled);
  const max = Math.max(1, ...totals);
  const step = Math.max(1, Math.ceil(max / 2));
  const top = step * 2; // grid lines at whole numbers
  const svg = frame(buckets, top, (v) => String(Math.round(v)), name);
  svg.dataset.ends = String(totals.reduce((a, b) => a + b, 0));
  const bw = plotWidth() / buckets.length;
  buckets.forEach((b, i) => {
    const x = CHART.left + bw * i;
    let y = CHART.top + plotHeight();
    for (const o of OUTCOMES) {
      if (!b[o]) continue;
      const hgt = (b[o] / top) * plotHeight();
      y -= hgt;
      svg.append(s('rect', { x: x + bw * 0.1, y, width: bw * 0.8, height: hgt, class: `bar bar-${o}` }));
    }
    if (totals[i]) {
      // A hover target over the whole column tells the bucket's numbers.
      svg.append(s('rect', { x, y: CHART.top, width: bw, height: plotHeight(), class: 'hover' },
        s('title', null, `${clock(b.start)} UTC: ${OUTCOMES.map((o) => `${b[o]} ${o}`).join(', ')}`)));
    }
  });
  return svg;
}

function percentileChart(buckets, key, name) {
  const values = buckets.map((b) => b[key]);
  const max = Math.max(0.001, ...values.filter(Boolean).map((p) => p.p95));
  const svg = frame(buckets, max, seconds, name);
  svg.dataset.points = String(values.filter(Boolean).length);
  const bw = plotWidth() / buckets.length;
  const xOf = (i) => CHART.left + bw * (i + 0.5);
  const yOf = (v) => CHART.top + plotHeight() * (1 - v / max);
  for (const q of ['p95', 'p50']) {
    // One path, broken where a bucket had no samples.
    let d = '';
    let open = false;
    values.forEach((p, i) => {
      if (!p) {
        open = false;
        return;
      }
      d += `${open ? 'L' : 'M'}${xOf(i).toFixed(1)} ${yOf(p[q]).toFixed(1)} `;
      open = true;
    });
    if (d) svg.append(s('path', { d: d.trim(), class: `line line-${q}` }));
    values.forEach((p, i) => {
      if (p) svg.append(s('circle', { cx: xOf(i), cy: yOf(p[q]), r: 2.5, class: `dot line-${q}` }));
    });
  }
  values.forEach((p, i) => {
    if (!p) return;
    svg.append(s('rect', { x: CHART.left + bw * i, y: CHART.top, width: bw, height: plotHeight(), class: 'hover' },
      s('title', null, `${clock(buckets[i].start)} UTC: p50 ${seconds(p.p50)}, p95 ${seconds(p.p95)} (${p.count} tasks)`)));
  });
  return svg;
}

document.addEventListener('DOMContentLoaded', () => {
  $('stats-1h').addEventListener('click', () => chooseWindow('1h'));
  $('stats-24h').addEventListener('click', () => chooseWindow('24h'));
  $('stats-series').addEventListener('change', (ev) => {
    charts.series = ev.currentTarget.value;
    charts.lastFetch = 0;
    refreshStats();
  });
});
