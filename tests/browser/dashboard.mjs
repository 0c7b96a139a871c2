// The dashboard in headless Chromium (run by tests/dashboard.rs): sign in; create an
// integration and import a connection; its deployed functions, models and deploying tool; a failing sync found by a word of its error; its
// operation's message; a triggered run appearing without a reload; the sync's chart; another
// environment's connection out of reach; key rotation with a grace period; sign out.
// With LASSO_README_SCREENSHOTS set, it also saves the README's screenshots there.
import { launch, run, check, env } from './harness.mjs';

const base = env('LASSO_BASE');
const key = env('LASSO_KEY');
const deployHook = env('LASSO_DEPLOY_HOOK');
const grace = Number(env('LASSO_GRACE_SECS'));
const readme = process.env.LASSO_README_SCREENSHOTS;

const context = await launch();
const page = context.pages()[0] ?? (await context.newPage());
page.on('dialog', (dialog) => dialog.accept());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const RUN_TIMEOUT = 60000;

async function shot(name) {
    if (readme) await page.screenshot({ path: `${readme}/${name}.png` });
}

async function apiStatus(secretKey) {
    const response = await fetch(`${base}/integrations`, { headers: { authorization: `Bearer ${secretKey}` } });
    return response.status;
}

const sync = (name) => page.locator(`section[data-sync="${name}"]`);

async function trigger(name) {
    await sync(name).locator('button[data-action="trigger"]').click();
    await page.waitForURL(/done=/);
}

await run(context, [
    ['sign in', async () => {
        await page.goto(`${base}/`);
        check(page.url().includes('/ui/signin'), `expected the sign-in page, got ${page.url()}`);
        await shot('signin');
        await page.fill('input[name="secret_key"]', key);
        await page.click('form[action="/ui/signin"] button[type="submit"]');
        await page.waitForURL(/\/ui\/$/);
        await page.locator('#tasks-per-minute svg.chart').waitFor();
        const session = (await context.cookies(`${base}/ui/`)).find((c) => c.name === 'lasso_session');
        check(session, 'no session cookie');
        check(session.httpOnly && session.sameSite === 'Strict' && session.path === '/ui',
            `cookie attributes: ${JSON.stringify(session)}`);
        const visible = await page.evaluate(() =>
            JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
        check(!visible.includes(key), 'the secret key is in browser storage');
        check(!visible.includes(session.value), 'the session cookie is readable by scripts');
    }],
    ['create an integration from the catalog', async () => {
        await page.click('header.top nav >> text=Integrations');
        await page.click('text=New integration');
        await page.fill('input[name="q"]', 'fakehub');
        await page.click('form.filters button[type="submit"]');
        await page.waitForURL(/q=fakehub/);
        await page.locator('tr[data-provider="fakehub"] button[type="submit"]').click();
        await page.waitForURL(/\/ui\/integrations\/fakehub$/);
    }],
    ['import a connection', async () => {
        await page.click('header.top nav >> text=Connections');
        await page.click('text=Import a connection');
        await page.selectOption('select[name="integration"]', 'fakehub');
        await page.fill('input[name="connection_id"]', 'acme');
        await page.fill('textarea[name="credentials"]', JSON.stringify({ type: 'API_KEY', apiKey: 'fk_live_secret' }));
        await page.click('form[action="/ui/connections"] button[type="submit"]');
        await page.waitForURL(/\/ui\/connections\/fakehub\/acme/);
        check(!(await page.content()).includes('fk_live_secret'), 'the API key is on the page');
    }],
    ['deploy the syncs (as lasso deploy would)', async () => {
        const response = await fetch(deployHook, { method: 'POST' });
        check(response.ok, `deploy failed: ${await response.text()}`);
        await page.reload();
        await sync('warehouse').waitFor();
        await sync('tickets').waitFor();
    }],
    ['see the deployed functions with their models and the tool that deployed them', async () => {
        const connection = page.url();
        await page.goto(`${base}/ui/integrations/fakehub`);
        const row = page.locator('table.functions tr[data-function="tickets"]');
        await row.waitFor();
        const tool = (await row.locator('td.deployed-with').textContent()).trim();
        check(tool === 'lasso', `deployed with: ${tool}`);
        await row.locator('details summary').first().click();
        check((await row.locator('pre.json').first().textContent()).includes('"id"'), 'no model schema shown');
        await shot('integration');
        await page.goto(connection);
        await sync('tickets').waitFor();
    }],
    ['run a sync that fails', async () => {
        await trigger('warehouse');
        await sync('warehouse').locator('tr[data-run] .badge.FAILED').first().waitFor({ timeout: RUN_TIMEOUT });
    }],
    ['find its operation by a word of its error', async () => {
        await page.click('header.top nav >> text=Logs');
        await page.fill('input[name="q"]', 'kumquat');
        await page.click('form.filters button[type="submit"]');
        await page.waitForURL(/q=kumquat/);
        const rows = page.locator('tr[data-operation]');
        check((await rows.count()) >= 1, 'the search found nothing');
        for (const text of await rows.allTextContents()) {
            check(text.includes('warehouse') && text.includes('kumquat'), `unexpected row: ${text}`);
        }
        await shot('logs');
        await rows.first().locator('a').first().click();
    }],
    ['open it and see the message', async () => {
        await page.waitForURL(/\/ui\/logs\/[0-9a-f-]{36}$/);
        await page.locator('td.message', { hasText: 'opening the warehouse ledger' }).waitFor();
        await page.locator('.operation-error', { hasText: 'kumquat ink' }).waitFor();
        await shot('operation');
    }],
    ['trigger a sync from the connection page and see its new run appear', async () => {
        await page.goto(`${base}/ui/connections/fakehub/acme`);
        const runs = sync('tickets').locator('tr[data-run]');
        check((await runs.count()) === 0, 'tickets ran before it was triggered');
        await trigger('tickets');
        // The page polls while the run goes on: no reload here.
        await sync('tickets').locator('tr[data-run] .badge.SUCCEEDED').first().waitFor({ timeout: RUN_TIMEOUT });
        check((await runs.count()) === 1, `expected one run, saw ${await runs.count()}`);
    }],
    ["the sync's chart shows its runs", async () => {
        await trigger('tickets');
        await page.waitForFunction(() =>
            document.querySelectorAll('section[data-sync="tickets"] tr[data-run] .badge.SUCCEEDED').length === 2,
            null, { timeout: RUN_TIMEOUT });
        const charts = sync('tickets').locator('svg.chart');
        check((await charts.count()) === 2, 'a duration chart and a records chart');
        check((await charts.first().locator('rect.bar.ok').count()) === 2, 'two successful runs in the chart');
        const changed = await charts.nth(1).locator('rect.bar title').allTextContents();
        check(changed.length === 2 && changed[0].startsWith('1 added') && changed[1].startsWith('1 added'),
            `records changed per run: ${changed}`);
        check((await sync('warehouse').locator('svg.chart').first().locator('rect.bar.bad').count()) >= 1,
            'the failed run in the warehouse chart');
        await sync('tickets').scrollIntoViewIfNeeded();
        await shot('connection');
    }],
    ["a session of this environment cannot open another environment's connection", async () => {
        const response = await page.goto(`${base}/ui/connections/fakehub/bravo-only`);
        check(response.status() === 404, `status ${response.status()}`);
        check(!(await page.content()).includes('fk_bravo_secret'), "bravo's key is on the page");
        const list = await page.goto(`${base}/ui/connections`);
        check(list.status() === 200 && !(await page.content()).includes('bravo-only'), "bravo's connection is listed");
    }],
    ['rotate the secret key from the settings page', async () => {
        await page.goto(`${base}/ui/settings`);
        await page.fill('input[name="grace_secs"]', String(grace));
        await page.click('form[action="/ui/settings/rotate-key"] button[type="submit"]');
        const newKey = (await page.locator('#new-secret-key').textContent()).trim();
        check(newKey.startsWith('lasso_sk_') && newKey !== key, `new key: ${newKey}`);
        check((await apiStatus(key)) === 200, 'the old key stopped before its grace period ended');
        check((await apiStatus(newKey)) === 200, 'the new key does not work');
        const deadline = Date.now() + (grace + 15) * 1000;
        while ((await apiStatus(key)) === 200) {
            check(Date.now() < deadline, 'the old key still works long after its grace period');
            await sleep(250);
        }
        check((await apiStatus(key)) === 401, 'the old key should be refused');
        check((await apiStatus(newKey)) === 200, 'the new key stopped too');
        await page.goto(`${base}/ui/settings`);
        check(!(await page.content()).includes(newKey), 'the new key is shown again');
        await shot('settings');
    }],
    ['the overview charts the tasks that ran', async () => {
        await page.goto(`${base}/ui/`);
        const bars = page.locator('#tasks-per-minute svg.chart rect.bar');
        check((await bars.count()) === 60, `a bar per minute, saw ${await bars.count()}`);
        const labels = (await bars.locator('title').allTextContents()).join(' ');
        const succeeded = [...labels.matchAll(/(\d+) succeeded/g)].reduce((n, m) => n + Number(m[1]), 0);
        check(succeeded >= 2, `the two tickets runs: ${labels}`);
        await page.locator('#queue-depth', { hasText: 'CREATED' }).waitFor();
        await shot('overview');
    }],
    ['sign out', async () => {
        await page.click('form[action="/ui/signout"] button[type="submit"]');
        await page.waitForURL(/\/ui\/signin/);
        await page.goto(`${base}/ui/logs`);
        check(page.url().includes('/ui/signin'), 'still signed in after signing out');
    }],
]);
