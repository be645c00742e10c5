// The operator page end to end: headless Chromium against the real daemon.
// Each test starts its own daemon, so that no task of one test shows up in
// another's panel.

import { chmod, mkdtemp, readFile, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';

import { LAPTOP, PHONE, closePages, launch, openPage, screenshot, stateText, until } from '../lib/browser.mjs';
import { startDaemon } from '../lib/daemon.mjs';

let browser;
const daemons = [];

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

afterEach(async () => {
  await closePages();
  while (daemons.length) await daemons.pop().cleanup();
});

async function daemon(options) {
  const d = await startDaemon(options);
  daemons.push(d);
  return d;
}

/** Starts a test task from the page's form; resolves to the task id. */
async function startTestTask(page, { target = 'test:web', times, roundMs }) {
  await page.getByLabel('Target').fill(target);
  await page.getByLabel('Rounds').fill(String(times));
  await page.getByLabel('Round (ms)').fill(String(roundMs));
  // The notice of an earlier submit must not be taken for this one's.
  await page.locator('#notice').evaluate((n) => { n.textContent = ''; });
  await page.getByRole('button', { name: 'Start test task' }).click();
  const notice = await until('the submit notice', async () => {
    const text = await page.locator('#notice').innerText();
    return text.startsWith(`Test task ${target}`) ? text : null;
  });
  return Number(notice.match(/#(\d+)/)[1]);
}

const running = (page, id) => page.locator(`#running li[data-key="${id}"]`);
const waiting = (page, id) => page.locator(`#pending li[data-key="${id}"]`);

async function progressValue(page, id) {
  return running(page, id).locator('progress').evaluate((p) => p.value);
}

test('idle daemon shows Idle with the pool and its worker limit', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  assert.match(await stateText(page), /^Idle/);
  assert.equal(await page.locator('#pools tr th').innerText(), 'background');
  assert.match(await page.locator('#pools tr').innerText(), /0 \/ 2/);
  assert.match(await page.locator('#feed').innerText(), /Live/);
  await screenshot(page, 'idle-laptop');
  await page.setViewportSize(PHONE);
  await screenshot(page, 'idle-phone');
  assert.deepEqual(page.problems, []);
});

test('a wrong token is refused at sign-in', async () => {
  const d = await daemon();
  const page = await browser.newPage();
  await page.goto(d.base + '/');
  await page.getByLabel('Token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That token is not accepted.').waitFor();
  assert.equal(await page.locator('#app').isHidden(), true);
  await page.close();
});

test('a test task started from the page appears at once and its progress bar moves', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  const clicked = Date.now();
  const id = await startTestTask(page, { times: 20, roundMs: 100 });
  await running(page, id).waitFor({ timeout: 5000 });
  assert.ok(Date.now() - clicked < 3000, 'the task showed up at once');
  assert.match(await stateText(page), /^Active/);
  const item = running(page, id);
  assert.match(await item.innerText(), /test test:web/);
  assert.match(await item.innerText(), /\bapi\b/, 'trigger shown');
  // The stage arrives with the task's first report, an instant after it starts.
  await until('the stage shown', async () => /Stage counting/.test(await item.innerText()), 3000);
  assert.match(await item.innerText(), /started \d+ s ago/);
  assert.match(await item.locator('.abs').innerText(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  await until('progress to be reported', () => item.locator('progress').isVisible());
  const first = await progressValue(page, id);
  await page.waitForTimeout(500);
  const second = await progressValue(page, id);
  assert.ok(second > first, `progress moved: ${first} -> ${second}`);
  assert.match(await item.innerText(), /\d+\/20/);
  await screenshot(page, 'running-laptop');
  await page.setViewportSize(PHONE);
  await screenshot(page, 'running-phone');
  await page.setViewportSize(LAPTOP);
  // The page did not block meanwhile: the task finishes and is listed.
  await page.locator(`#list-finished li[data-key="${id}"]`).waitFor({ timeout: 10000 });
  await until('Idle again', async () => /^Idle/.test(await stateText(page)));
  assert.match(await page.locator(`#list-finished li[data-key="${id}"]`).innerText(), /succeeded[\s\S]*"rounds":20/);
  assert.deepEqual(page.problems, []);
});

test('a repeated request is shown waiting behind the running task with its merged count', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  const first = await startTestTask(page, { times: 100, roundMs: 100 });
  await running(page, first).waitFor();
  const followUp = await startTestTask(page, { times: 100, roundMs: 100 });
  assert.notEqual(followUp, first);
  assert.match(await page.locator('#notice').innerText(), new RegExp(`#${followUp} waiting behind #${first}`));
  await waiting(page, followUp).waitFor({ timeout: 5000 });
  assert.match(await waiting(page, followUp).innerText(), new RegExp(`waiting behind #${first}`));
  const merged = await startTestTask(page, { times: 100, roundMs: 100 });
  assert.equal(merged, followUp, 'the third request merged into the follow-up');
  await until('the merged count', async () => /1 merged request\b/.test(await waiting(page, followUp).innerText()));
  await screenshot(page, 'follow-up-laptop');
  await page.setViewportSize(PHONE);
  await screenshot(page, 'follow-up-phone');
});

test('cancel from the page ends the running task as canceled in the failed list', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  const id = await startTestTask(page, { times: 100, roundMs: 100 });
  await running(page, id).waitFor();
  await running(page, id).getByRole('button', { name: /^Cancel/ }).click();
  await running(page, id).waitFor({ state: 'detached', timeout: 5000 });
  const failed = page.locator(`#list-failed li[data-key="${id}"]`);
  await failed.waitFor({ timeout: 5000 });
  assert.match(await failed.innerText(), /canceled/);
  await until('Idle after cancel', async () => /^Idle/.test(await stateText(page)));
  // Delete it from the history too.
  await failed.getByRole('button', { name: /^Delete/ }).click();
  await failed.waitFor({ state: 'detached', timeout: 5000 });
  assert.equal((await d.call('GET', `/api/v1/tasks/${id}`)).status, 404);
});

test('the history charts fill as test tasks end, per window and per kind', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  const ends = () => page.locator('#chart-ends svg').getAttribute('data-ends');
  await until('the empty charts', async () => (await ends()) === '0');
  assert.equal(await page.locator('#stats-summary').innerText(), 'No task ended in the last hour.');
  await screenshot(page, 'history-empty-laptop');

  for (const target of ['test:a', 'test:b', 'test:c']) {
    await startTestTask(page, { target, times: 2, roundMs: 50 });
  }
  // Each end moves the panel's recorded_ends, which refetches the charts.
  await until('three ends charted', async () => (await ends()) === '3');
  assert.match(await page.locator('#stats-summary').innerText(), /All tasks, last hour: 3 succeeded, 0 failed, 0 canceled/);
  assert.ok(await page.locator('#chart-ends rect.bar-succeeded').count() >= 1);
  const points = (id) => page.locator(`#${id} svg`).getAttribute('data-points');
  assert.ok(Number(await points('chart-duration')) >= 1, 'run time charted');
  assert.ok(Number(await points('chart-wait')) >= 1, 'queue wait charted');
  assert.ok(await page.locator('#chart-duration path.line-p50').count() >= 1);

  const long = await startTestTask(page, { target: 'test:long', times: 100, roundMs: 100 });
  await running(page, long).waitFor();
  await running(page, long).getByRole('button', { name: /^Cancel/ }).click();
  await until('the cancel charted', async () => (await ends()) === '4');
  assert.match(await page.locator('#stats-summary').innerText(), /3 succeeded, 0 failed, 1 canceled/);
  assert.ok(await page.locator('#chart-ends rect.bar-canceled').count() >= 1);
  await screenshot(page, 'history-laptop');
  await page.setViewportSize(PHONE);
  await page.locator('#stats-title').scrollIntoViewIfNeeded();
  await screenshot(page, 'history-phone');
  await page.setViewportSize(LAPTOP);

  // The day in fifteen-minute buckets holds the same ends.
  await page.getByRole('button', { name: 'Last 24 h' }).click();
  await until('the day window', async () => /last 24 hours/.test(await page.locator('#stats-summary').innerText()));
  assert.equal(await page.locator('#chart-ends-title').innerText(), 'Ended per 15 minutes');
  assert.equal(await ends(), '4');
  assert.equal(await page.getByRole('button', { name: 'Last 24 h' }).getAttribute('aria-pressed'), 'true');

  // One kind and pool alone.
  await page.getByLabel('Kind and pool').selectOption({ label: 'test · background' });
  await until('the series chosen', async () => /^test \(background\), last 24 hours: 3 succeeded/.test(await page.locator('#stats-summary').innerText()));
  await screenshot(page, 'history-day-laptop');
  assert.deepEqual(page.problems, []);
});

test('retry from the page requests a canceled task again as a new task', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  const id = await startTestTask(page, { times: 100, roundMs: 100 });
  await running(page, id).waitFor();
  await running(page, id).getByRole('button', { name: /^Cancel/ }).click();
  await until('the cancel notice', async () => new RegExp(`Cancel of #${id} signaled; canceled once its run has ended`).test(await page.locator('#notice').innerText()));
  const failed = page.locator(`#list-failed li[data-key="${id}"]`);
  await failed.waitFor({ timeout: 5000 });
  await failed.getByRole('button', { name: /^Retry/ }).click();
  const notice = await until('the retry notice', async () => {
    const text = await page.locator('#notice').innerText();
    return /Retry of #\d+ queued as task #(\d+)/.exec(text);
  });
  const retried = Number(notice[1]);
  assert.notEqual(retried, id);
  const task = await d.call('GET', `/api/v1/tasks/${retried}`);
  assert.equal(task.body.retry_of, id);
  assert.equal(task.body.trigger, 'operator');
  await running(page, retried).waitFor({ timeout: 5000 });
  await screenshot(page, 'retry-laptop');
});

test('rebuild selected entities from typed names queues operator tasks', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  await page.getByLabel(/Entity names/).fill('country:DE, asn:13335');
  await page.getByRole('button', { name: 'Rebuild selected' }).click();
  await until('the rebuild notice', async () => /Rebuild of 2 entities/.test(await page.locator('#notice').innerText()));
  // Artifact tasks end in milliseconds: look for them in the history.
  await until('both rebuild tasks recorded with trigger operator', async () => {
    const { body } = await d.call('GET', '/api/v1/tasks?status=finished&limit=100');
    const mine = body.tasks.filter((t) => t.trigger === 'operator' && ['country:DE', 'asn:13335'].includes(t.target));
    return mine.length === 2 && mine.every((t) => t.kind === 'artifact');
  });
  await screenshot(page, 'rebuild-selected-laptop');
  // Names that are not entity names are refused before any request.
  await page.getByLabel(/Entity names/).fill('../etc');
  await page.getByRole('button', { name: 'Rebuild selected' }).click();
  await until('the refusal', async () => /Not entity names/.test(await page.locator('#notice').innerText()));
});

test('the integrity list shows a missing artifact first and rebuilding it restores the file', async () => {
  const d = await daemon({ feeds: true });
  // Wait for the start-up build of the sample feed's artifacts.
  let entities;
  await until('every artifact built', async () => {
    const { body } = await d.call('GET', '/api/v1/entities');
    entities = body.entities;
    return body.total > 0 && body.counts.ok === body.total;
  });
  const victim = entities[entities.length - 1].entity;
  const [cls, id] = victim.split(':');
  const file = join(d.dataDir, 'artifacts', cls, `${id}.txt`);
  const content = await readFile(file, 'utf8');
  await unlink(file);
  const page = await openPage(browser, d);
  await page.locator('#entities').waitFor();
  const listed = await page.locator('#entity-list li').allInnerTexts();
  assert.match(listed[0], new RegExp(`^${victim}\\s+missing`), 'the missing artifact comes first');
  await page.getByLabel(new RegExp(`^${victim}`)).check();
  await page.getByRole('button', { name: 'Rebuild selected' }).click();
  await until('the rebuild notice', async () => /Rebuild of 1 entity/.test(await page.locator('#notice').innerText()));
  await until('the artifact restored', async () => (await readFile(file, 'utf8').catch(() => '')) === content);
  await screenshot(page, 'entities-laptop');
});

test('an unhealthy feed is shown with why, and the warning goes when it is healthy again', async () => {
  const d = await daemon({ feeds: true });
  const page = await openPage(browser, d);
  const warning = page.locator('#feed-warnings p[data-feed="sample"]');
  const { status } = await d.call('POST', '/api/v1/feeds/sample/health', { healthy: false });
  assert.equal(status, 200);
  await until('the feed warning', async () => /Feed sample is unhealthy: marked unhealthy/.test(await warning.innerText().catch(() => '')));
  await screenshot(page, 'feed-warning-laptop');
  await d.call('POST', '/api/v1/feeds/sample/health', { healthy: true });
  await until('the warning gone', async () => page.locator('#feed-warnings').isHidden());
});

test('keyboard: sign in with Enter, focus on a Cancel button survives live updates, Enter cancels', async () => {
  const d = await daemon();
  await d.call('POST', '/api/v1/tasks', { kind: 'test', target: 'test:keys', params: { times: 100, round_ms: 100 } });
  const context = await browser.newContext({ viewport: LAPTOP });
  const page = await context.newPage();
  await page.goto(d.base + '/');
  await page.keyboard.type(d.token); // the token field has focus on load
  await page.keyboard.press('Enter');
  const cancel = running(page, 1).getByRole('button', { name: /^Cancel/ });
  await cancel.waitFor();
  await cancel.focus();
  const before = await running(page, 1).locator('progress').evaluate((p) => p.value);
  await page.waitForTimeout(600); // several panel events
  assert.ok(await running(page, 1).locator('progress').evaluate((p) => p.value) > before, 'the panel updated');
  assert.equal(await cancel.evaluate((b) => b === document.activeElement), true, 'focus kept');
  await page.keyboard.press('Enter');
  await page.locator('#list-failed li[data-key="1"]').waitFor({ timeout: 5000 });
  await context.close();
});

test('changing a pool worker limit from the page shows the new limit', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  await page.getByLabel('Worker limit for pool background').fill('5');
  await page.getByRole('button', { name: 'Set' }).click();
  await until('the new limit in the panel', async () => /0 \/ 5/.test(await page.locator('#pools tr').innerText()));
  assert.equal((await d.call('GET', '/api/v1/panel')).body.pools[0].limit, 5);
});

test('a read-role token sees the panel but no operator buttons', async () => {
  const d = await daemon({
    config: `
[[tokens]]
name = "viewer"
token = "read-token-0123456789abcdef"
role = "read"

[[tokens]]
name = "ops"
token = "operate-token-0123456789abcdef"
role = "operate"
`,
  });
  const ops = 'operate-token-0123456789abcdef';
  const submitted = await d.call('POST', '/api/v1/tasks',
    { kind: 'test', target: 'test:read', params: { times: 100, round_ms: 100 } }, ops);
  assert.equal(submitted.status, 202);
  const page = await openPage(browser, d, { token: 'read-token-0123456789abcdef' });
  await running(page, submitted.body.id).waitFor();
  assert.match(await page.locator('#who').innerText(), /viewer \(read\)/);
  const buttons = await page.locator('button:visible').allInnerTexts();
  // The history's window buttons change only the view.
  assert.deepEqual(buttons, ['Log out', 'Last hour', 'Last 24 h'], 'only sign-out and view buttons are offered');
  assert.equal(await page.locator('input:visible, textarea:visible').count(), 0);
  await screenshot(page, 'read-role-laptop');
  // The operate token on the same daemon gets them.
  const opsPage = await openPage(browser, d, { token: ops });
  await running(opsPage, submitted.body.id).getByRole('button', { name: /^Cancel/ }).waitFor();
  assert.ok(await opsPage.getByRole('button', { name: 'Rebuild all' }).isVisible());
});

test('without the event stream the page polls the panel and still follows the work', async () => {
  const d = await daemon();
  const page = await openPage(browser, d, {
    // As behind a proxy that refuses long-lived responses.
    setup: (p) => p.route('**/api/v1/panel/events**', (route) => route.abort()),
  });
  await until('the polling notice', async () => /Polling every 2 s/.test(await page.locator('#feed').innerText()));
  assert.match(await stateText(page), /^Idle/);
  const { body } = await d.call('POST', '/api/v1/tasks', { kind: 'test', target: 'test:poll', params: { times: 50, round_ms: 100 } });
  await running(page, body.id).waitFor({ timeout: 3000 });
  assert.match(await stateText(page), /^Active/);
});

test('a stopped daemon shows Missing / broken status, never Idle', async () => {
  const d = await daemon();
  const page = await openPage(browser, d, { viewport: PHONE });
  assert.match(await stateText(page), /^Idle/);
  await d.stop('SIGKILL');
  await until('Missing / broken status', async () => (await stateText(page)) === 'Missing / broken status', 5000);
  assert.equal(await page.locator('#panel-body').isHidden(), true, 'the last panel is not shown');
  // It stays so while the daemon is down (polling keeps failing).
  for (let i = 0; i < 6; i += 1) {
    await page.waitForTimeout(500);
    const text = await stateText(page);
    assert.equal(text, 'Missing / broken status');
    assert.doesNotMatch(await page.locator('body').innerText(), /\bIdle\b/);
  }
  assert.match(await page.locator('#broken').innerText(), /cannot be reached/);
  assert.equal(await page.locator('.charts svg').count(), 0, 'no chart from the last good daemon');
  assert.match(await page.locator('#stats-summary').innerText(), /History is unavailable/);
  await screenshot(page, 'missing-phone');
  await page.setViewportSize(LAPTOP);
  await screenshot(page, 'missing-laptop');
});

test('SIGTERM with the page open: the event stream lets the daemon exit promptly', async () => {
  const d = await daemon();
  const page = await openPage(browser, d);
  assert.match(await page.locator('#feed').innerText(), /Live/);
  const t0 = Date.now();
  const { code } = await d.stop('SIGTERM');
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 5000, `exited in ${Date.now() - t0} ms`);
  await until('Missing / broken status', async () => (await stateText(page)) === 'Missing / broken status', 5000);
});

const OPS = 'operate-token-0123456789abcdef';

/** A daemon with an operate token and one command kind `noisy` running `body` in /bin/sh. */
async function commandDaemon(body) {
  const dir = await mkdtemp(join(tmpdir(), 'groundcrew-kind-'));
  const script = join(dir, 'noisy.sh');
  await writeFile(script, `#!/bin/sh\n${body}`);
  await chmod(script, 0o755);
  return daemon({
    config: `
[[tokens]]
name = "ops"
token = "${OPS}"
role = "operate"

[[kinds]]
name = "noisy"
command = ["${script}"]
`,
  });
}

test("a task's own page shows its request, attempts, error and its command's stderr lines", async () => {
  const d = await commandDaemon("echo 'fetching feed' >&2\necho 'disk full: /var/x' >&2\nexit 3\n");
  const submitted = await d.call('POST', '/api/v1/tasks', { kind: 'noisy', target: 'all', params: { depth: 2 } }, OPS);
  assert.equal(submitted.status, 202);
  const id = submitted.body.id;
  await until('the task failed and its stderr logged', async () => {
    const { body } = await d.call('GET', `/api/v1/tasks/${id}/log`, undefined, OPS);
    return body.lines.some((l) => l.source === 'stderr' && l.message === 'disk full: /var/x')
      && body.lines.some((l) => l.message.startsWith('task ended'));
  });
  const page = await openPage(browser, d, { token: OPS });
  // The id in the failed list links to the task's page.
  const listed = page.locator(`#list-failed li[data-key="${id}"]`);
  await listed.waitFor({ timeout: 5000 });
  await listed.getByRole('link', { name: `task #${id}`, exact: true }).click();
  await until('the task page', async () => /noisy all/.test(await page.locator('#task-title').innerText()));
  assert.equal(new URL(page.url()).hash, `#/tasks/${id}`);
  assert.equal(await page.locator('#history-title').isVisible(), false, 'the dashboard steps aside');
  const body = page.locator('#task-body');
  await until('the log lines', async () => /disk full: \/var\/x/.test(await body.innerText()));
  const text = await body.innerText();
  assert.match(text, /State\s+failed/);
  assert.match(text, /Triggers\s+api/);
  assert.match(text, /"depth": 2/, 'params');
  assert.match(text, /command exited with status 3: fetching feed/, 'error');
  assert.match(text, /Attempt 1 failed \d+ s ago \d{4}-\d\d-\d\dT[\d:]+Z: command exited/);
  const log = await page.locator('#task-body ol.log li').allInnerTexts();
  const stderr = log.filter((l) => /\bstderr\b/.test(l));
  assert.equal(stderr.length, 2, log.join('\n'));
  assert.match(stderr[0], /^\d\d:\d\d:\d\d\.\d{3} info stderr fetching feed$/);
  assert.match(stderr[1], /info stderr disk full: \/var\/x$/);
  assert.ok(log.findIndex((l) => /task ended state=failed/.test(l)) > log.indexOf(stderr[1]), 'oldest first');
  assert.deepEqual(page.problems.filter((p) => !p.includes('/api/v1/entities')), []);
  await screenshot(page, 'task-page-laptop');
  await page.setViewportSize(PHONE);
  await screenshot(page, 'task-page-phone');
  await page.setViewportSize(LAPTOP);

  // Retry from its page; the new task's page links back to it.
  await page.locator('#task-body').getByRole('button', { name: 'Retry' }).click();
  const notice = await until('the retry notice', async () => /Retry of #\d+ queued as task #(\d+)/.exec(await page.locator('#notice').innerText()));
  await page.evaluate((to) => { location.hash = `#/tasks/${to}`; }, notice[1]);
  await until('the retry\'s page', async () => /Retry of\s+#\d+/.test(await body.innerText().catch(() => '')));
  await body.getByRole('link', { name: `#${id}`, exact: true }).click();
  await until('back on the first task', async () => new URL(page.url()).hash === `#/tasks/${id}`);
  await body.getByRole('link', { name: '← All tasks' }).click();
  await page.locator('#history-title').waitFor();
  assert.equal(await page.locator('#task-page').isHidden(), true);
  await page.evaluate(() => { location.hash = '#/tasks/987654'; });
  await until('the unknown task', async () => /There is no task #987654/.test(await body.innerText()));
});

test('"Retry all shown" and "Delete all shown" act on the failed list', async () => {
  const d = await daemon();
  await d.call('PUT', '/api/v1/pools/background/limit', { limit: 0 });
  const ids = [];
  for (const target of ['test:a', 'test:b']) {
    const { body } = await d.call('POST', '/api/v1/tasks', { kind: 'test', target });
    await d.call('DELETE', `/api/v1/tasks/${body.id}`);
    ids.push(body.id);
  }
  const page = await openPage(browser, d);
  for (const id of ids) await page.locator(`#list-failed li[data-key="${id}"]`).waitFor({ timeout: 5000 });
  await page.getByRole('button', { name: 'Retry all shown' }).click();
  await until('the bulk retry notice', async () => /^Retried 2 of 2 failed tasks: #\d+ as #\d+ queued, #\d+ as #\d+ queued\.$/.test(await page.locator('#notice').innerText()));
  await until('the retries pending', async () => (await page.locator('#list-pending li').count()) === 2);
  const pending = await d.call('GET', '/api/v1/tasks?status=pending');
  assert.deepEqual(pending.body.tasks.map((t) => t.retry_of).sort(), [...ids].sort());
  await screenshot(page, 'bulk-retry-laptop');
  page.once('dialog', (dialog) => dialog.accept());
  await page.getByRole('button', { name: 'Delete all shown' }).click();
  await until('the bulk delete notice', async () => /^Deleted 2 failed tasks from the history\.$/.test(await page.locator('#notice').innerText()));
  await until('the failed list empty', async () => (await page.locator('#list-failed li').count()) === 0);
  assert.equal((await d.call('GET', '/api/v1/tasks?status=failed')).body.total, 0);
  assert.equal((await d.call('GET', '/api/v1/tasks?status=pending')).body.total, 2, 'pending tasks untouched');
  assert.deepEqual(page.problems, []);
});
