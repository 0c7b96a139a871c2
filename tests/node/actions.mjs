// Nango's official Node client (`@nangohq/node`, unmodified, from npm) running actions against
// a real Lasso api. Run by tests/actions.rs, which deploys tests/fixtures/actions-project and
// passes NANGO_NODE_MODULE, LASSO_HOST and LASSO_SECRET_KEY (see nango-client.mjs).
//
// Each step prints `ok <step>`; the first failure prints the step and the error and exits
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

try {
    step = 'triggerAction';
    const output = await nango.triggerAction('acme', 'conn-1', 'echo', { title: 'from node' });
    assert.deepEqual(output, { echo: { title: 'from node' }, connection: 'conn-1' });
    ok();

    step = 'triggerAction with an ActionError';
    try {
        await nango.triggerAction('acme', 'conn-1', 'refuse', {});
        assert.fail('expected the action to fail');
    } catch (err) {
        // What Nango's client surfaces: the answer's error, with the thrown payload.
        assert.equal(err.response?.data?.error?.code, 'action_script_runtime_error');
        assert.deepEqual(err.response.data.error.payload, { code: 'duplicate', message: 'an issue with this title exists' });
    }
    ok();

    step = 'triggerActionAsync';
    const pending = await nango.triggerActionAsync('acme', 'conn-1', 'wait', { ms: 200 });
    assert.match(pending.id, /^[0-9a-f-]{36}$/);
    assert.equal(pending.statusUrl, `/action/${pending.id}`);
    ok();

    step = 'getAsyncActionResult';
    let result;
    for (let i = 0; i < 100; i++) {
        result = await nango.getAsyncActionResult({ statusUrl: pending.statusUrl });
        if (result && result.waited !== undefined) {
            break;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(result, { waited: 200 });
    assert.deepEqual(await nango.getAsyncActionResult({ id: pending.id }), { waited: 200 });
    ok();
} catch (err) {
    console.log(`FAILED ${step}: ${err.stack || err}`);
    if (err.response) {
        console.log(`api answered ${err.response.status}: ${JSON.stringify(err.response.data)}`);
    }
    process.exit(1);
}
