// Starts the real `groundcrew serve` binary for a test: a fresh data
// directory, a free loopback port (bind 127.0.0.1:0, address read from the
// daemon's stdout), the generated admin token read from the data directory.

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const here = new URL('.', import.meta.url).pathname;

/** The daemon binary: $GROUNDCREW_BIN, else the workspace's debug build. */
export const BIN = process.env.GROUNDCREW_BIN || resolve(here, '../../target/debug/groundcrew');

/**
 * Starts a daemon. `config` (TOML text) is written to a file and passed
 * with --config; `feeds: true` keeps the built-in sample feed. Resolves
 * once it listens.
 */
export async function startDaemon({ config, feeds = false } = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'groundcrew-web-'));
  const args = ['serve', '--bind', '127.0.0.1:0', '--data-dir', dataDir];
  if (config) {
    const file = join(dataDir, 'groundcrew.toml');
    await writeFile(file, config);
    args.push('--config', file);
  }
  // The daemon takes every GROUNDCREW_* variable as configuration and
  // refuses unknown ones, GROUNDCREW_BIN included; tests pass none.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GROUNDCREW_')));
  // Without feeds unless asked: no start-up artifact work in the panel.
  if (!feeds) env.GROUNDCREW_FEEDS = '[]';
  const proc = spawn(BIN, args, {
    env: { ...env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  const base = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error('groundcrew did not report its address in 30 s')), 30000);
    proc.once('error', (e) => {
      clearTimeout(timer);
      rej(new Error(`cannot start ${BIN}: ${e.message} (build it with cargo build, or set GROUNDCREW_BIN)`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`groundcrew exited early (code ${code}, signal ${signal})`));
    });
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = line.match(/^groundcrew listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
  });
  let token = null;
  if (!config) token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();

  return {
    base,
    token,
    dataDir,
    pid: proc.pid,
    exited,
    /** Calls the API; resolves to { status, body }. */
    async call(method, path, body, asToken = token) {
      const res = await fetch(base + path, {
        method,
        headers: {
          Authorization: `Bearer ${asToken}`,
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
    /** Sends `signal` and waits for the process to exit. */
    async stop(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    /** Stops the daemon if still running and removes its data directory. */
    async cleanup() {
      await this.stop('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
