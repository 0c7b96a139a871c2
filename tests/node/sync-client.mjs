// Nango's official Node client (`@nangohq/node`, unmodified, from npm) driving Lasso's sync API.
// Run by tests/schedules.rs, which deploys the `contacts` sync of integration `fakehub`, creates
// connection `acme`, waits for its first run and passes:
//
//   NANGO_NODE_MODULE  absolute path of @nangohq/node's ESM entry
//   LASSO_HOST         the api's base URL
//   LASSO_SECRET_KEY   the environment's secret key
//
// Each step prints `ok <step>`; the first failure prints the step and the error, and exits
// non-zero.

import assert from 'node:assert/strict';

const env = (name) => {
    const value = process.env[name];
    if (!value) {
        throw new Error(`${name} is not set`);
    }
    return value;
};

const { Nango } = await import(env('NANGO_NODE_MODULE'));
const nango = new Nango({ host: env('LASSO_HOST'), secretKey: env('LASSO_SECRET_KEY') });

let step = 'start';
const ok = () => console.log(`ok ${step}`);

async function rejects(promise, status) {
    try {
        await promise;
    } catch (err) {
        assert.equal(err.response?.status, status, `expected ${status}, got ${err.response?.status}: ${err.message}`);
        return err.response.data;
    }
    assert.fail(`expected the call to fail with ${status}`);
}

/// The status of `contacts` for `acme`, once `check` accepts it.
async function waitFor(check) {
    const deadline = Date.now() + 30_000;
    for (;;) {
        const { syncs } = await nango.syncStatus('fakehub', ['contacts'], 'acme');
        if (check(syncs[0])) {
            return syncs[0];
        }
        if (Date.now() > deadline) {
            assert.fail(`status never matched: ${JSON.stringify(syncs[0])}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
}

try {
    step = 'syncStatus';
    const first = await waitFor((s) => s.status === 'SUCCESS');
    assert.equal(first.name, 'contacts');
    assert.equal(first.connection_id, 'acme');
    assert.equal(first.frequency, 'every 30s');
    assert.deepEqual(first.recordCount, { Contact: 3 });
    assert.deepEqual(first.latestResult, { Contact: { added: 3, updated: 0, deleted: 0 } });
    const all = await nango.syncStatus('fakehub', '*');
    assert.equal(all.syncs.length, 1);
    ok();

    step = 'updateSyncConnectionFrequency';
    assert.deepEqual(await nango.updateSyncConnectionFrequency('fakehub', 'contacts', 'acme', 'every 2 hours'), {
        frequency: 'every 2 hours',
    });
    assert.equal((await waitFor(() => true)).frequency, 'every 2 hours');
    assert.deepEqual(await nango.updateSyncConnectionFrequency('fakehub', { name: 'contacts', variant: 'base' }, 'acme', null), {
        frequency: 'every 30s',
    });
    ok();

    step = 'triggerSync with reset';
    const before = first.finishedAt;
    await nango.triggerSync('fakehub', ['contacts'], 'acme', { reset: true });
    const full = await waitFor((s) => s.status === 'SUCCESS' && s.finishedAt !== before);
    assert.equal(full.type, 'FULL');
    assert.deepEqual(full.latestResult, { Contact: { added: 0, updated: 0, deleted: 0 } });
    ok();

    step = 'triggerSync (legacy sync mode)';
    await nango.triggerSync('fakehub', ['contacts'], 'acme', 'incremental');
    await waitFor((s) => s.status === 'SUCCESS' && s.type === 'INCREMENTAL');
    ok();

    step = 'pauseSync';
    await nango.pauseSync('fakehub', ['contacts'], 'acme');
    const paused = await waitFor(() => true);
    assert.equal(paused.status, 'PAUSED');
    assert.equal(paused.nextScheduledSyncAt, null);
    ok();

    step = 'startSync';
    await nango.startSync('fakehub', ['contacts']);
    const started = await waitFor((s) => s.status !== 'PAUSED');
    assert.ok(started.nextScheduledSyncAt);
    ok();

    step = 'errors';
    const unknown = await rejects(nango.triggerSync('fakehub', ['nope'], 'acme'), 404);
    assert.equal(unknown.error.code, 'unknown_sync');
    const noConnection = await rejects(nango.syncStatus('fakehub', ['contacts'], 'zed'), 404);
    assert.equal(noConnection.error.code, 'unknown_connection');
    ok();
} catch (err) {
    console.error(`failed at ${step}: ${err.stack || err}`);
    if (err.response) {
        console.error(`api answered ${err.response.status}: ${JSON.stringify(err.response.data)}`);
    }
    process.exit(1);
}
