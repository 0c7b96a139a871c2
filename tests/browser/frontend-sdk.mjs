// Nango's frontend SDK (`@nangohq/frontend` from npm, unmodified) in headless Chromium, run
// by tests/frontend_sdk.rs: an app page on its own origin loads the SDK and, with a connect
// session token, `nango.auth()` completes an OAuth2 connection (popup to Lasso's
// /oauth/connect, the provider's consent, the callback, the outcome on the SDK's socket at
// Lasso's `/`) and then an API key connection (a cross-origin fetch with a CORS preflight).
import { launch, run, check, env } from './harness.mjs';

const app = env('LASSO_APP');
const host = env('LASSO_BASE');
const oauthToken = env('LASSO_OAUTH_SESSION_TOKEN');
const keyToken = env('LASSO_KEY_SESSION_TOKEN');

const context = await launch();
const page = context.pages()[0] ?? (await context.newPage());
const logs = [];
page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => logs.push(`pageerror: ${e}`));

// Runs `fn` in the page on a click (a user gesture, as an app's button would): the SDK opens
// its popup right away, as browsers want. Resolves with what it resolved with.
async function onClick(fn, arg) {
    await page.evaluate(
        ([source, arg]) => {
            window.__result = undefined;
            const button = document.getElementById('go');
            button.onclick = () => {
                const f = new Function('Nango', 'arg', `return (${source})(Nango, arg);`);
                // A promise that never settles (the failure this test guards against) ends
                // the step with what happened instead of hanging the run.
                const stuck = new Promise((resolve) =>
                    setTimeout(() => resolve({ error: 'the promise did not settle within 60 s' }), 60000)
                );
                window.__result = Promise.race([
                    f(window.Nango, arg).then(
                        (value) => ({ ok: value }),
                        (error) => ({ error: `${error && error.type}: ${error && error.message}` })
                    ),
                    stuck,
                ]);
            };
        },
        [fn.toString(), arg]
    );
    await page.click('#go');
    return await page.evaluate(() => window.__result);
}

await run(context, [
    ['app page loads the SDK', async () => {
        await page.goto(`${app}/app.html`);
        await page.waitForFunction(() => typeof window.Nango === 'function');
    }],
    ['nango.auth() completes an OAuth2 connection', async () => {
        const result = await onClick(
            (Nango, { host, token }) =>
                new Nango({ host, connectSessionToken: token }).auth('mock-oauth'),
            { host, token: oauthToken }
        );
        check(result && result.ok, `auth() did not resolve: ${JSON.stringify(result)}\n${logs.join('\n')}`);
        check(result.ok.providerConfigKey === 'mock-oauth', `wrong integration: ${JSON.stringify(result)}`);
        check(typeof result.ok.connectionId === 'string' && result.ok.connectionId.length > 0, `no connection id: ${JSON.stringify(result)}`);
        console.log(`oauth connection ${result.ok.connectionId}`);
    }],
    ['nango.auth() with an API key from another origin', async () => {
        const result = await onClick(
            (Nango, { host, token }) =>
                new Nango({ host, connectSessionToken: token }).auth('keys', { credentials: { apiKey: 'sk-from-the-browser' } }),
            { host, token: keyToken }
        );
        check(result && result.ok, `auth() did not resolve: ${JSON.stringify(result)}\n${logs.join('\n')}`);
        check(result.ok.providerConfigKey === 'keys', `wrong integration: ${JSON.stringify(result)}`);
        console.log(`api key connection ${result.ok.connectionId}`);
    }],
]);
