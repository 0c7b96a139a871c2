// Nango's official Node client (`@nangohq/node`, unmodified, from npm) against a real Lasso api.
// Run by tests/nango_client.rs, which serves the api and a fake provider API and passes:
//
//   NANGO_NODE_MODULE  absolute path of @nangohq/node's ESM entry (NODE_PATH does not apply to
//                      ES modules, so the script imports it by path)
//   LASSO_HOST         the api's base URL
//   LASSO_SECRET_KEY   the environment's secret key
//   FAKE_PROVIDER      catalog name of an OAUTH2 provider whose proxy base URL is the fake API
//                      (it echoes every request as JSON) and whose token URL refreshes tokens
//   KEY_PROVIDER       catalog name of an API_KEY provider
//
// Each step prints `ok <step>`; the first failure prints the step, the error and the api's
// answer, and exits non-zero.

import assert from 'node:assert/strict';
import http from 'node:http';

const env = (name) => {
    const value = process.env[name];
    if (!value) {
        throw new Error(`${name} is not set`);
    }
    return value;
};

const { Nango } = await import(env('NANGO_NODE_MODULE'));
const host = env('LASSO_HOST');
const secretKey = env('LASSO_SECRET_KEY');
const fakeProvider = env('FAKE_PROVIDER');
const keyProvider = env('KEY_PROVIDER');

const nango = new Nango({ host, secretKey });

let step = 'start';
const ok = () => console.log(`ok ${step}`);

/// The error of `promise`, which must reject with an HTTP `status`.
async function rejects(promise, status) {
    try {
        await promise;
    } catch (err) {
        assert.equal(err.response?.status, status, `expected ${status}, got ${err.response?.status}: ${err.message}`);
        return err.response.data;
    }
    assert.fail(`expected the call to fail with ${status}`);
}

/// An endpoint the 0.71 client has no method for, called with its own axios instance and headers.
function raw(method, path, data) {
    return nango.http.request({ method, url: `${host}${path}`, data, headers: nango.enrichHeaders({}) });
}

async function providers() {
    step = 'listProviders';
    const all = await nango.listProviders({});
    assert.ok(all.data.length > 1);
    const found = await nango.listProviders({ search: fakeProvider });
    assert.deepEqual(
        found.data.map((p) => p.name),
        [fakeProvider]
    );
    ok();

    step = 'getProvider';
    const one = await nango.getProvider({ provider: fakeProvider });
    assert.equal(one.data.name, fakeProvider);
    assert.equal(one.data.auth_mode, 'OAUTH2');
    await rejects(nango.getProvider({ provider: 'no-such-provider' }), 404);
    ok();
}

async function integrations() {
    step = 'createIntegration';
    const created = await nango.createIntegration({
        provider: fakeProvider,
        unique_key: 'fake',
        display_name: 'Fake API',
        credentials: { type: 'OAUTH2', client_id: 'fake-client', client_secret: 'fake-secret', scopes: 'read,write' }
    });
    assert.equal(created.data.unique_key, 'fake');
    assert.equal(created.data.provider, fakeProvider);
    assert.equal(created.data.display_name, 'Fake API');
    assert.equal(created.data.credentials, undefined, 'no credentials unless asked');
    await nango.createIntegration({ provider: keyProvider, unique_key: 'keys' });
    await nango.createIntegration({ provider: keyProvider, unique_key: 'short-lived' });
    ok();

    step = 'listIntegrations';
    const list = await nango.listIntegrations();
    assert.deepEqual(list.configs.map((i) => i.unique_key).sort(), ['fake', 'keys', 'short-lived']);
    ok();

    step = 'getIntegration';
    const plain = await nango.getIntegration({ uniqueKey: 'fake' });
    assert.equal(plain.data.credentials, undefined);
    const full = await nango.getIntegration({ uniqueKey: 'fake' }, { include: ['credentials'] });
    assert.deepEqual(full.data.credentials, {
        type: 'OAUTH2',
        client_id: 'fake-client',
        client_secret: 'fake-secret',
        scopes: 'read,write',
        webhook_secret: null
    });
    const hook = await nango.getIntegration({ uniqueKey: 'fake' }, { include: ['webhook'] });
    assert.match(hook.data.webhook_url, /\/webhook\/[0-9a-f-]{36}\/fake$/);
    await rejects(nango.getIntegration({ uniqueKey: 'missing' }), 404);
    ok();

    step = 'updateIntegration';
    const updated = await nango.updateIntegration({ uniqueKey: 'fake' }, { display_name: 'Fake API 2' });
    assert.equal(updated.data.display_name, 'Fake API 2');
    const renamed = await nango.updateIntegration({ uniqueKey: 'short-lived' }, { unique_key: 'doomed' });
    assert.equal(renamed.data.unique_key, 'doomed');
    ok();

    step = 'deleteIntegration';
    const deleted = await nango.deleteIntegration('doomed');
    assert.equal(deleted.status, 200);
    assert.deepEqual(deleted.data, { success: true });
    await rejects(nango.getIntegration({ uniqueKey: 'doomed' }), 404);
    ok();
}

async function connections() {
    // 0.71 has no method for POST /connections (import).
    step = 'import connections (POST /connections)';
    const imported = await raw('POST', '/connections', {
        provider_config_key: 'fake',
        connection_id: 'conn-1',
        credentials: { type: 'OAUTH2', access_token: 'token-1', refresh_token: 'refresh-1', expires_at: '2099-01-01T00:00:00.000Z' },
        connection_config: { region: 'eu' },
        end_user: { id: 'user-1', email: 'user-1@example.com', display_name: 'User One' },
        tags: { team: 'blue' }
    });
    assert.equal(imported.status, 201);
    assert.equal(imported.data.connection_id, 'conn-1');
    assert.equal(imported.data.provider_config_key, 'fake');
    assert.equal(imported.data.credentials.access_token, 'token-1');
    await raw('POST', '/connections', {
        provider_config_key: 'keys',
        connection_id: 'conn-2',
        credentials: { type: 'API_KEY', apiKey: 'key-2' },
        tags: { Team: 'red' }
    });
    ok();

    step = 'listConnections';
    const all = await nango.listConnections();
    assert.deepEqual(all.connections.map((c) => c.connection_id).sort(), ['conn-1', 'conn-2']);
    const one = all.connections.find((c) => c.connection_id === 'conn-1');
    assert.equal(one.provider_config_key, 'fake');
    assert.equal(one.provider, fakeProvider);
    assert.equal(typeof one.created, 'string');
    assert.deepEqual(one.errors, []);
    assert.equal(one.end_user.id, 'user-1');
    assert.equal(one.credentials, undefined, 'lists carry no credentials');
    const ids = (r) => r.connections.map((c) => c.connection_id);
    assert.deepEqual(ids(await nango.listConnections('conn-2')), ['conn-2']);
    assert.deepEqual(ids(await nango.listConnections({ connectionId: 'conn-1' })), ['conn-1']);
    assert.deepEqual(ids(await nango.listConnections({ integrationId: 'keys' })), ['conn-2']);
    assert.deepEqual(ids(await nango.listConnections({ userId: 'user-1' })), ['conn-1']);
    // The client lower-cases tag keys in filters, as Nango stores them.
    assert.deepEqual(ids(await nango.listConnections({ tags: { Team: 'red' } })), ['conn-2']);
    assert.deepEqual(all.connections.find((c) => c.connection_id === 'conn-2').tags, { team: 'red' });
    assert.deepEqual(ids(await nango.listConnections(undefined, undefined, { endUserId: 'user-1' })), ['conn-1']);
    assert.equal((await nango.listConnections({ limit: 1 })).connections.length, 1);
    ok();

    step = 'getConnection';
    const conn = await nango.getConnection('fake', 'conn-1');
    assert.equal(conn.connection_id, 'conn-1');
    assert.deepEqual(conn.connection_config, { region: 'eu' });
    assert.equal(conn.credentials.type, 'OAUTH2');
    assert.equal(conn.credentials.access_token, 'token-1');
    assert.equal(conn.credentials.refresh_token, undefined, 'the refresh token only when asked');
    assert.deepEqual(conn.tags, { team: 'blue' });
    const withRefresh = await nango.getConnection('fake', 'conn-1', false, true);
    assert.equal(withRefresh.credentials.refresh_token, 'refresh-1');
    // An imported token's raw response is what was imported, less the refresh token unless asked.
    assert.deepEqual(await nango.getRawTokenResponse('fake', 'conn-1'), {
        type: 'OAUTH2',
        access_token: 'token-1',
        expires_at: '2099-01-01T00:00:00.000Z'
    });
    assert.equal(withRefresh.credentials.raw.refresh_token, 'refresh-1');
    await rejects(nango.getConnection('fake', 'missing'), 404);
    ok();

    step = 'getToken';
    assert.equal(await nango.getToken('fake', 'conn-1'), 'token-1');
    assert.deepEqual(await nango.getToken('keys', 'conn-2'), { type: 'API_KEY', apiKey: 'key-2' });
    // forceRefresh asks the provider's token URL (oauth2-mock-server) for a new token.
    const refreshed = await nango.getToken('fake', 'conn-1', true);
    assert.equal(typeof refreshed, 'string');
    assert.notEqual(refreshed, 'token-1');
    assert.equal(await nango.getToken('fake', 'conn-1'), refreshed);
    ok();

    step = 'patchConnection';
    const patched = await nango.patchConnection(
        { connectionId: 'conn-1', provider_config_key: 'fake' },
        { tags: { team: 'green' }, end_user: { id: 'user-1', email: 'new@example.com' } }
    );
    assert.deepEqual(patched, { success: true });
    const after = await nango.getConnection('fake', 'conn-1');
    assert.deepEqual(after.tags, { team: 'green' });
    assert.equal(after.end_user.email, 'new@example.com');
    ok();

    return refreshed;
}

async function metadata() {
    step = 'setMetadata';
    const set = await nango.setMetadata('fake', 'conn-1', { plan: 'pro', limits: { seats: 5 } });
    assert.equal(set.status, 200);
    assert.deepEqual(set.data, { connection_id: 'conn-1', provider_config_key: 'fake', metadata: { plan: 'pro', limits: { seats: 5 } } });
    ok();

    step = 'updateMetadata';
    const update = await nango.updateMetadata('fake', ['conn-1'], { limits: { seats: 10 }, region: 'eu' });
    assert.equal(update.status, 200);
    await rejects(nango.updateMetadata('fake', ['conn-1', 'missing'], { x: 1 }), 404);
    ok();

    step = 'getMetadata';
    assert.deepEqual(await nango.getMetadata('fake', 'conn-1'), { plan: 'pro', limits: { seats: 10 }, region: 'eu' });
    assert.equal(await nango.getMetadata('keys', 'conn-2'), null);
    ok();
}

async function proxy(token) {
    step = 'proxy get';
    const got = await nango.get({
        providerConfigKey: 'fake',
        connectionId: 'conn-1',
        endpoint: '/users/42',
        params: { page: '2' },
        headers: { 'X-Custom': 'yes' }
    });
    assert.equal(got.status, 200);
    assert.equal(got.headers['x-fake-provider'], 'echo', "the provider's headers come back");
    assert.equal(got.data.method, 'GET');
    assert.equal(got.data.path, '/api/users/42');
    assert.equal(got.data.query, 'page=2');
    assert.equal(got.data.headers.authorization, `Bearer ${token}`);
    assert.equal(got.data.headers['x-custom'], 'yes');
    for (const name of Object.keys(got.data.headers)) {
        assert.ok(!/^(nango-|connection-id|provider-config-key|base-url-override)/.test(name), `${name} reached the provider`);
    }
    assert.ok(!JSON.stringify(got.data).includes(secretKey), 'the secret key reached the provider');
    ok();

    step = 'proxy post';
    const posted = await nango.post({
        providerConfigKey: 'fake',
        connectionId: 'conn-1',
        endpoint: 'items',
        data: { name: 'widget', count: 3 }
    });
    assert.equal(posted.status, 201, "the provider's status comes back");
    assert.equal(posted.data.method, 'POST');
    assert.equal(posted.data.path, '/api/items');
    assert.match(posted.data.headers['content-type'], /^application\/json/);
    assert.deepEqual(JSON.parse(posted.data.body), { name: 'widget', count: 3 });
    ok();

    step = 'proxy';
    const deleted = await nango.proxy({
        method: 'DELETE',
        providerConfigKey: 'fake',
        connectionId: 'conn-1',
        endpoint: '/items/7',
        retries: 2,
        headers: { 'Content-Type': 'text/plain' }
    });
    assert.equal(deleted.data.method, 'DELETE');
    assert.equal(deleted.data.path, '/api/items/7');
    await rejects(nango.get({ providerConfigKey: 'fake', connectionId: 'missing', endpoint: '/x' }), 404);
    ok();
}

async function records() {
    step = 'listRecords';
    const page = await nango.listRecords({ providerConfigKey: 'fake', connectionId: 'conn-1', model: 'Issue' });
    assert.deepEqual(page, { records: [], next_cursor: null });
    ok();
}

async function environmentVariables() {
    step = 'getEnvironmentVariables';
    assert.deepEqual(await nango.getEnvironmentVariables(), [{ name: 'LASSO_TEST_VARIABLE', value: 'from-lasso' }]);
    ok();
}

async function connectSession() {
    step = 'createConnectSession';
    const session = await nango.createConnectSession({
        end_user: { id: 'user-2', email: 'user-2@example.com' },
        allowed_integrations: ['keys'],
        overrides: { keys: { docs_connect: 'https://example.com/docs/keys' } },
        tags: { Source: 'node' }
    });
    assert.match(session.data.token, /^nango_connect_session_/);
    assert.ok(new Date(session.data.expires_at) > new Date());
    const read = await nango.http.get(`${host}/connect/session`, { headers: { Authorization: `Bearer ${session.data.token}` } });
    assert.equal(read.data.data.endUser.id, 'user-2');
    assert.equal(read.data.data.tags.source, 'node');
    await rejects(nango.createConnectSession({ end_user: { id: 'user-2' }, allowed_integrations: ['missing'] }), 400);
    ok();
}

/// Receives one webhook on 127.0.0.1: resolves with its raw body and headers.
function receiveWebhook() {
    return new Promise((resolveServer) => {
        let deliver;
        const received = new Promise((resolve) => (deliver = resolve));
        const server = http.createServer((req, res) => {
            const chunks = [];
            req.on('data', (c) => chunks.push(c));
            req.on('end', () => {
                res.end();
                server.close();
                deliver({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers });
            });
        });
        server.listen(0, '127.0.0.1', () => {
            resolveServer({ url: `http://127.0.0.1:${server.address().port}/hooks`, received });
        });
    });
}

async function webhook() {
    step = 'verifyIncomingWebhookRequest';
    const { url, received } = await receiveWebhook();
    const settings = await raw('PATCH', '/environment', { webhook_url: url });
    const signingKey = (await raw('GET', '/environment')).data.webhook_signing_secret;
    assert.equal(settings.data.webhook_signing_secret, signingKey);
    // An API-key connection made through the auth endpoint sends the `auth` webhook.
    const auth = await raw('POST', '/api-auth/api-key/keys?connection_id=hooked', { apiKey: 'key-3' });
    assert.deepEqual(auth.data, { providerConfigKey: 'keys', connectionId: 'hooked' });
    const { body, headers } = await received;
    const event = JSON.parse(body);
    assert.equal(event.type, 'auth');
    assert.equal(event.connectionId, 'hooked');
    assert.equal(event.success, true);
    const verifier = new Nango({ host, secretKey, webhookSigningKey: signingKey });
    assert.equal(verifier.verifyIncomingWebhookRequest(body, headers), true);
    assert.equal(verifier.verifyIncomingWebhookRequest(body.replace('hooked', 'forged'), headers), false);
    const wrongKey = new Nango({ host, secretKey, webhookSigningKey: 'not-the-key' });
    assert.equal(wrongKey.verifyIncomingWebhookRequest(body, headers), false);
    ok();
}

async function cleanUp() {
    step = 'deleteConnection';
    const deleted = await nango.deleteConnection('keys', 'conn-2');
    assert.equal(deleted.status, 200);
    await rejects(nango.getConnection('keys', 'conn-2'), 404);
    await rejects(nango.deleteConnection('keys', 'conn-2'), 404);
    ok();

    step = 'deleteIntegration with connections';
    await nango.deleteIntegration('fake');
    assert.deepEqual((await nango.listConnections({ integrationId: 'fake' })).connections, []);
    ok();
}

try {
    await providers();
    await integrations();
    const token = await connections();
    await metadata();
    await proxy(token);
    await records();
    await environmentVariables();
    await connectSession();
    await webhook();
    await cleanUp();
} catch (err) {
    console.error(`FAILED at step "${step}": ${err.stack ?? err}`);
    if (err.response) {
        console.error(`the api answered ${err.response.status}: ${JSON.stringify(err.response.data)}`);
    }
    process.exit(1);
}
