// Lasso's hosted Connect UI opened by Nango's frontend SDK (`@nangohq/frontend` from npm,
// unmodified) in headless Chromium, run by tests/connect_ui.rs: an app page on its own origin
// calls `openConnectUI()`, which frames Lasso's /connect-ui/ and hands it the session token by
// postMessage. A person picks an integration and connects it: an API key (after a value that
// breaks the catalog's pattern and a key the provider refuses), then OAuth2 by keyboard in a
// popup, and sees an OAuth2 sign-in fail in words; a reconnect session goes straight to its
// connection; the page fits a phone. A
// screenshot of the app page is saved after every step; a failure prints their paths.
// With LASSO_README_SCREENSHOTS set, it also saves the README's picture there.
import { launch, run, check, env } from './harness.mjs';

const app = env('LASSO_APP');
const host = env('LASSO_BASE');
const token = env('LASSO_SESSION_TOKEN');
const reconnectToken = env('LASSO_RECONNECT_TOKEN');
const readme = process.env.LASSO_README_SCREENSHOTS;

const context = await launch();
const page = context.pages()[0] ?? (await context.newPage());
const logs = [];
page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => logs.push(`pageerror: ${e}`));

// Every request the Connect UI's frame makes goes to Lasso's origin, whatever `apiURL` says.
const elsewhere = [];
context.on('request', (request) => {
    const from = request.frame() && request.frame().url();
    if (from && from.startsWith(`${host}/connect-ui/`) && new URL(request.url()).origin !== host) {
        elsewhere.push(request.url());
    }
});

const ui = () => page.frameLocator('#connect-ui');
const frame = () => page.frames().find((f) => f.url().startsWith(`${host}/connect-ui/`));

// Opens the Connect UI as an app does; the SDK's events are kept in `window.__events`.
async function open(sessionToken) {
    await page.evaluate(
        ({ host, sessionToken }) => {
            window.__events = [];
            const nango = new window.Nango({ host, connectSessionToken: sessionToken });
            nango.openConnectUI({
                baseURL: `${host}/connect-ui`,
                // Where Nango's own UI would send its API calls; Lasso's never does (port 9 of
                // loopback, the discard port, would fail them).
                apiURL: 'http://127.0.0.1:9',
                onEvent: (event) => window.__events.push(event),
            });
        },
        { host, sessionToken }
    );
}

const events = () => page.evaluate(() => window.__events);

async function event(type) {
    try {
        await page.waitForFunction((type) => window.__events.some((e) => e.type === type), type);
    } catch (e) {
        throw new Error(`no ${type} event; events: ${JSON.stringify(await events())}\n${logs.join('\n')}`);
    }
    return (await events()).find((e) => e.type === type);
}

async function heading(name) {
    await ui().getByRole('heading', { name }).waitFor();
}

async function fitsTheScreen() {
    const { scroll, width } = await frame().evaluate(() => ({
        scroll: document.documentElement.scrollWidth,
        width: window.innerWidth,
    }));
    check(scroll <= width, `the page is ${scroll} px wide on a ${width} px screen`);
}

await run(
    context,
    [
        ['the app page loads the SDK', async () => {
            await page.goto(`${app}/app.html`);
            await page.waitForFunction(() => typeof window.Nango === 'function');
        }],
        ['openConnectUI lists the session\'s integrations', async () => {
            await open(token);
            await heading('Choose an integration');
            check((await events()).some((e) => e.type === 'ready'), 'no ready event');
            for (const name of ['Basic Thing', 'Broken OAuth', 'Keys', 'Mock OAuth']) {
                await ui().getByRole('button', { name: new RegExp(name) }).waitFor();
            }
            check(!(await ui().getByText('Not Allowed Thing').count()), 'an integration the session does not allow is listed');
            if (readme) await page.screenshot({ path: `${readme}/connect-ui.png` });
        }],
        ['the API key form has the catalog\'s labelled fields', async () => {
            await ui().getByRole('button', { name: /Keys/ }).click();
            await heading('Connect Keys');
            await ui().getByLabel('Workspace').waitFor();
            await ui().getByLabel('API key').waitFor();
            await ui().getByText('Find it under Settings, then API.').waitFor();
            await ui().getByText('https://').waitFor();
            await ui().getByText('.keys.test').waitFor();
            const describedBy = await ui().getByLabel('Workspace').getAttribute('aria-describedby');
            check(describedBy && describedBy.includes('hint'), `the description is not tied to the field: ${describedBy}`);
        }],
        ['values that break the catalog\'s patterns get readable errors', async () => {
            await ui().getByLabel('Workspace').fill('Not Valid!');
            await ui().getByLabel('API key').fill('wrong');
            await ui().getByRole('button', { name: 'Connect', exact: true }).click();
            await ui().getByText('Some fields need attention:').waitFor();
            await ui().locator('.field-error', { hasText: 'This doesn\'t look like a valid Workspace. It should look like “acme”.' }).waitFor();
            await ui().locator('.field-error', { hasText: 'This doesn\'t look like a valid API key. It should look like “sk-live-123”.' }).waitFor();
            check((await ui().getByLabel('Workspace').getAttribute('aria-invalid')) === 'true', 'Workspace is not marked invalid');
            check((await ui().getByLabel('Workspace').inputValue()) === 'Not Valid!', 'the typed workspace was lost');
            check((await ui().getByLabel('API key').inputValue()) === '', 'a secret was sent back into the page');
            const focused = await frame().evaluate(() => document.activeElement && document.activeElement.name);
            check(focused === 'params[workspace]', `the first wrong field is not focused: ${focused}`);
        }],
        ['a key the provider refuses gets a readable error', async () => {
            await ui().getByLabel('Workspace').fill('acme');
            await ui().getByLabel('API key').fill('sk-refused');
            await ui().getByRole('button', { name: 'Connect', exact: true }).click();
            await ui().getByRole('alert').filter({ hasText: 'Keys did not accept these credentials. Check them and try again.' }).waitFor();
            const error = await event('error');
            check(error.payload.errorType === 'connection_test_failed', `error event: ${JSON.stringify(error)}`);
        }],
        ['a good key connects and the SDK hears of it', async () => {
            await ui().getByLabel('API key').fill('sk-good-key');
            await ui().getByRole('button', { name: 'Connect', exact: true }).click();
            await heading('Keys is connected');
            const connect = await event('connect');
            check(connect.payload.providerConfigKey === 'keys', `connect event: ${JSON.stringify(connect)}`);
            console.log(`api key connection ${connect.payload.connectionId}`);
        }],
        ['Done closes the Connect UI', async () => {
            await ui().getByRole('button', { name: 'Done' }).click();
            await page.locator('#connect-ui').waitFor({ state: 'detached' });
            check((await events()).some((e) => e.type === 'close'), 'no close event');
        }],
        ['OAuth2 by keyboard: the popup signs in and the page reports the connection', async () => {
            await open(token);
            await heading('Choose an integration');
            await ui().getByRole('button', { name: /Mock OAuth/ }).press('Enter');
            await heading('Connect Mock OAuth');
            const popup = context.waitForEvent('page');
            await ui().getByRole('button', { name: 'Continue to Mock OAuth' }).press('Enter');
            await popup;
            const connect = await event('connect');
            check(connect.payload.providerConfigKey === 'mock-oauth', `connect event: ${JSON.stringify(connect)}`);
            await heading('Mock OAuth is connected');
            console.log(`oauth connection ${connect.payload.connectionId}`);
        }],
        ['an OAuth2 sign-in that fails comes back as a readable error', async () => {
            await ui().getByRole('button', { name: 'Done' }).click();
            await page.locator('#connect-ui').waitFor({ state: 'detached' });
            await open(token);
            await ui().getByRole('button', { name: /Broken OAuth/ }).click();
            await heading('Connect Broken OAuth');
            const popup = context.waitForEvent('page');
            await ui().getByRole('button', { name: 'Continue to Broken OAuth' }).click();
            await popup;
            await ui().getByRole('alert').filter({ hasText: 'Broken OAuth could not be reached. Try again in a moment.' }).waitFor();
            const error = await event('error');
            check(error.payload.errorType === 'provider_unreachable', `error event: ${JSON.stringify(error)}`);
            check(!(await events()).some((e) => e.type === 'connect'), 'a failed sign-in was reported as a connection');
            await ui().getByRole('button', { name: 'Back' }).click();
            await heading('Choose an integration');
            await ui().getByRole('button', { name: 'Close' }).focus();
        }],
        ['Escape closes the Connect UI', async () => {
            await page.keyboard.press('Escape');
            await page.locator('#connect-ui').waitFor({ state: 'detached' });
        }],
        ['a reconnect session goes straight to its connection', async () => {
            await open(reconnectToken);
            await heading('Reconnect Keys');
            check(!(await ui().getByRole('button', { name: 'Back' }).count()), 'a reconnect session offers other integrations');
            await ui().getByLabel('Workspace').fill('acme');
            await ui().getByLabel('API key').fill('sk-good-rotated');
            await ui().getByRole('button', { name: 'Reconnect' }).click();
            await heading('Keys is reconnected');
            const connect = await event('connect');
            console.log(`reconnected ${connect.payload.connectionId}`);
            await ui().getByRole('button', { name: 'Done' }).click();
            await page.locator('#connect-ui').waitFor({ state: 'detached' });
        }],
        ['the list fits a phone-width screen', async () => {
            await page.setViewportSize({ width: 375, height: 740 });
            await open(token);
            await heading('Choose an integration');
            await fitsTheScreen();
        }],
        ['the form fits a phone-width screen', async () => {
            await ui().getByRole('button', { name: /Keys/ }).click();
            await heading('Connect Keys');
            await fitsTheScreen();
        }],
        ['the Connect UI called no origin but its own', async () => {
            check(elsewhere.length === 0, `requests to other origins: ${elsewhere.join(', ')}`);
        }],
    ],
    { everyStep: () => page }
);
