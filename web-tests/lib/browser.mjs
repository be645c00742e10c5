// Headless Chromium from the system package (no browser download), driven
// by playwright-core, plus the helpers every page test uses.

import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';

const here = new URL('.', import.meta.url).pathname;
export const SCREENSHOTS = resolve(here, '../screenshots');

export const LAPTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export async function launch() {
  await mkdir(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Opens the daemon's page in a fresh context (so a fresh sessionStorage),
 * signs in with `token`, and waits for the panel. Browser console errors
 * and CSP violations are collected in `page.problems`. `setup(page)` runs
 * before the page loads (to route requests, say).
 */
export async function openPage(browser, daemon, { token = daemon.token, viewport = LAPTOP, setup } = {}) {
  const context = await browser.newContext({ viewport });
  opened.push(context);
  const page = await context.newPage();
  if (setup) await setup(page);
  page.problems = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const url = msg.location().url || '';
    // Expected: this daemon has no integrity list yet, and the page
    // asks for it to find out (the browser logs every 404 it fetches).
    if (url.endsWith('/api/v1/entities')) return;
    page.problems.push(`${msg.text()} (${url})`);
  });
  page.on('pageerror', (err) => page.problems.push(String(err)));
  await page.goto(daemon.base + '/');
  await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#state.state-idle, #state.state-active').waitFor({ timeout: 10000 });
  return page;
}

const opened = [];

/** Closes every page opened since the last call. */
export async function closePages() {
  while (opened.length) await opened.pop().close();
}

export async function screenshot(page, name) {
  // A sticky header would otherwise be drawn where the page was scrolled to.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: resolve(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** The state line's text. */
export const stateText = (page) => page.locator('#state').innerText();

/** Polls `fn` until it returns a truthy value; fails after `ms`. */
export async function until(what, fn, ms = 10000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
