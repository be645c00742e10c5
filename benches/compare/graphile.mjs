// Drains N no-op jobs with graphile-worker on DATABASE_URL: runner started
// first, jobs added with addJobs in batches, timed from the first add until
// the jobs table is empty. Prints one JSON line.
import { run, makeWorkerUtils } from "graphile-worker";

const [url, n, batch, concurrency, localQueue] = process.argv.slice(2);
const N = Number(n), B = Number(batch), C = Number(concurrency), LQ = Number(localQueue);
const preset = { worker: { connectionString: url, concurrentJobs: C, maxPoolSize: C + 2,
  ...(LQ > 0 ? { localQueue: { size: LQ } } : {}) } };
const utils = await makeWorkerUtils({ connectionString: url });
await utils.migrate();
const runner = await run({ preset, noHandleSignals: true, taskList: { noop: async () => {} } });
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i += B) {
  const specs = [];
  for (let j = i; j < Math.min(N, i + B); j++) specs.push({ identifier: "noop", payload: { j } });
  await utils.addJobs(specs);
}
const pool = runner.pgPool ?? null;
for (;;) {
  const left = await utils.withPgClient(c => c.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs"));
  if (left.rows[0].n === 0) break;
  await new Promise(r => setTimeout(r, 20));
}
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ tasks: N, seconds: s, per_s: N / s }));
await runner.stop();
await utils.release();
