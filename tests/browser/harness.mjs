// The browser-test harness's Node side, shared by every web page's tests: launches Debian's
// Chromium headless through playwright-core with a fresh profile, runs named steps, and on
// a failure saves a screenshot of every open page and prints the paths.
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.LASSO_PLAYWRIGHT);

const FLAGS = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
];

export function env(name) {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set`);
    return value;
}

export async function launch() {
    const context = await chromium.launchPersistentContext(env('LASSO_PROFILE_DIR'), {
        executablePath: env('LASSO_CHROMIUM'),
        headless: true,
        args: FLAGS,
        viewport: { width: 1280, height: 860 },
    });
    context.setDefaultTimeout(15000);
    return context;
}

export function screenshotPath(name) {
    const dir = env('LASSO_SCREENSHOT_DIR');
    fs.mkdirSync(dir, { recursive: true });
    return path.join(dir, `${name.replace(/[^a-z0-9-]+/gi, '-')}.png`);
}

export function check(condition, message) {
    if (!condition) throw new Error(message);
}

// Runs `steps` (an array of [name, async fn]) in order, printing each; on a failure saves
// screenshots of the context's pages, prints their paths and exits with status 1. With
// `options.everyStep` (a function returning a page), a screenshot of that page is also saved
// after each step (`step-NN-<name>.png`), and a failure prints those paths too, so the steps
// that led up to it can be seen.
export async function run(context, steps, options = {}) {
    let current = 'start';
    const taken = [];
    try {
        for (const [name, fn] of steps) {
            current = name;
            const started = Date.now();
            await fn();
            console.log(`ok   ${name} (${Date.now() - started} ms)`);
            if (options.everyStep) {
                const number = String(taken.length + 1).padStart(2, '0');
                const file = screenshotPath(`step-${number}-${name}`);
                await options.everyStep().screenshot({ path: file, fullPage: true });
                taken.push(file);
            }
        }
    } catch (error) {
        console.log(`FAIL ${current}: ${error && error.stack ? error.stack : error}`);
        for (const file of taken) console.log(`screenshot after a step: ${file}`);
        let i = 0;
        for (const page of context.pages()) {
            const file = screenshotPath(`failure-${current}-${i++}`);
            try {
                await page.screenshot({ path: file, fullPage: true });
                console.log(`screenshot: ${file} (${page.url()})`);
            } catch (e) {
                console.log(`could not save a screenshot of ${page.url()}: ${e}`);
            }
        }
        await context.close();
        process.exit(1);
    }
    await context.close();
}
