// graphile-worker's side of benches/queue.rs: no-op jobs enqueued -> claimed -> completed on the
// same Postgres as Lasso's side, in its own database.
//
//   node graphile_bench.mjs <node_modules dir> <database url> <jobs> <default|batched> <concurrency>
//
// The worker runs first (idle); the clock starts before the first job is added (addJobs, 1000
// per call, as Lasso inserts 1000 tasks per statement) and stops when graphile-worker's jobs
// table is empty, i.e. every completion is committed (in batched mode completions are written
// after the `job:complete` event, so the event alone would stop the clock early).
// Prints JSON: {jobs, seconds, jobs_per_sec, mode, concurrency, version}.
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const [modules, connectionString, jobsArg, mode, concurrencyArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const concurrency = Number(concurrencyArg);
if (!modules || !connectionString || !(jobs > 0) || !['default', 'batched'].includes(mode) || !(concurrency > 0)) {
    console.error('usage: graphile_bench.mjs <node_modules dir> <database url> <jobs> <default|batched> <concurrency>');
    process.exit(2);
}
const gw = await import(path.join(modules, 'graphile-worker/dist/index.js'));
const pg = createRequire(path.join(modules, 'noop.js'))('pg');

const { version } = JSON.parse(readFileSync(path.join(modules, 'graphile-worker/package.json'), 'utf8'));

// Batched: graphile-worker's documented batching options (worker.graphile.org/docs/performance):
// a local queue that locks jobs in bulk, and completions/failures written in batches.
const worker = mode === 'batched'
    ? { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 }
    : {};
const silent = new gw.Logger(() => () => {});

const pool = new pg.Pool({ connectionString, max: concurrency + 2 });
pool.on('error', (e) => console.error('pool error:', e.message));
await gw.runMigrations({ pgPool: pool, logger: silent });
const utils = await gw.makeWorkerUtils({ pgPool: pool, logger: silent });

let completed = 0;
const runner = await gw.run({
    pgPool: pool,
    concurrency,
    noHandleSignals: true,
    logger: silent,
    taskList: { noop: async () => {} },
    preset: { worker },
});
runner.events.on('job:complete', () => { completed += 1; });

const start = process.hrtime.bigint();
for (let i = 0; i < jobs; i += 1000) {
    const n = Math.min(1000, jobs - i);
    await utils.addJobs(Array.from({ length: n }, () => ({ identifier: 'noop', payload: {} })));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (;;) {
    if (completed >= jobs) {
        const { rows } = await pool.query('SELECT count(*)::int AS n FROM graphile_worker._private_jobs');
        if (rows[0].n === 0) break;
    }
    await sleep(2);
}
const seconds = Number(process.hrtime.bigint() - start) / 1e9;

await runner.stop();
await utils.release();
await pool.end();
console.log(JSON.stringify({ jobs, seconds, jobs_per_sec: jobs / seconds, mode, concurrency, completed, version }));
