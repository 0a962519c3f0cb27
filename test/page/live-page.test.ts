import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { after, before, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ObserverManager, SessionStore } from '../../src/index.js';
import { createServer } from '../../src/server.js';
import { call, startServer } from '../support/watchers.js';

/** Debian's Chromium; `.ci/run` installs it when it is missing. No browser is downloaded. */
const CHROMIUM = process.env['HERALD_CHROMIUM'] ?? '/usr/bin/chromium';
const SHOTS = fileURLToPath(new URL('../../scratch/page-screenshots/', import.meta.url));
const problem = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set HERALD_CHROMIUM)`;
if (problem !== false && process.env['CI'] === 'true') test('Chromium is there (CI requires it)', () => assert.fail(problem));

let browser: Browser;
before(async () => {
  if (problem !== false) return;
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
});
after(async () => {
  await browser?.close();
});

async function open(t: TestContext, url: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 900, height: 800 } });
  t.after(() => page.close());
  page.setDefaultTimeout(10_000);
  await page.goto(url);
  return page;
}

test('the live page: create a session, see a set made over the API appear without reload, set from the form and read it back; observers per key and stats', { skip: problem, timeout: 60_000 }, async (t) => {
  const { base, store } = await startServer(t);
  const page = await open(t, `${base}/`);
  await page.getByLabel('New session id').fill('42');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('button', { name: 'open session 42' }).waitFor();
  await page.locator('#connection[data-state="live"]').waitFor();

  assert.equal((await call(base, 'PUT', '/v1/sessions/42/variables/mode', { value: 'eco' })).status, 200);
  const mode = page.locator('tr[data-name="mode"]');
  await mode.locator('td', { hasText: '"eco"' }).waitFor();
  assert.equal(await mode.locator('td.changed').count(), 2, 'the changed value and version are highlighted');

  await page.getByLabel('Name', { exact: true }).fill('limits');
  await page.getByLabel('Value (JSON)').fill('{"max": 3}');
  await page.getByRole('button', { name: 'Set' }).click();
  await page.locator('tr[data-name="limits"] td', { hasText: '{"max":3}' }).waitFor();
  assert.deepEqual((await call(base, 'GET', '/v1/sessions/42/variables/limits')).body, { name: 'limits', value: { max: 3 }, version: 1 });

  await page.getByLabel('Value (JSON)').fill('eco');
  await page.getByRole('button', { name: 'Set' }).click();
  await page.locator('#set-error', { hasText: 'must be JSON' }).waitFor();
  await page.getByLabel('Name', { exact: true }).fill('x'.repeat(300));
  await page.getByLabel('Value (JSON)').fill('1');
  await page.getByRole('button', { name: 'Set' }).click();
  await page.locator('#set-error', { hasText: 'HERALD_INVALID_ARGUMENT' }).waitFor();

  // Observers per key (the page's own watch is one), and the hub's rate.
  await page.locator('tr[data-name="mode"] td:nth-child(4)', { hasText: '1' }).waitFor();
  await store.set('42', 'mode', 'boost');
  await page.locator('tr[data-name="mode"] td', { hasText: '"boost"' }).waitFor();
  await page.waitForFunction('document.querySelector("#sparkline polyline").getAttribute("points") !== ""');
  await page.screenshot({ path: `${SHOTS}live-page.png` });
});

test('the live page reconnects when the server restarts, and reads the values again', { skip: problem, timeout: 60_000 }, async (t) => {
  const hub = new ObserverManager();
  const store = new SessionStore({ hub });
  t.after(async () => {
    await store.close();
    await hub.close();
  });
  let server = createServer({ hub, store });
  const { port } = await server.listen(0, '127.0.0.1');
  t.after(() => server.close());
  const base = `http://127.0.0.1:${port}`;
  await store.createSession('r');
  await store.set('r', 'x', 1);
  const page = await open(t, `${base}/`);
  await page.getByRole('button', { name: 'open session r' }).click();
  await page.locator('tr[data-name="x"] td', { hasText: '1' }).first().waitFor();
  await page.locator('#connection[data-state="live"]').waitFor();

  await server.close();
  await page.locator('#connection[data-state="reconnecting"]').waitFor();
  // Changed while the server was down: the page must read it again.
  await store.set('r', 'x', 2);
  server = createServer({ hub, store });
  await server.listen(port, '127.0.0.1');
  await page.locator('tr[data-name="x"] td', { hasText: '2' }).first().waitFor({ timeout: 20_000 });
  await page.locator('#connection[data-state="live"]').waitFor({ timeout: 20_000 });
  await store.set('r', 'x', 3);
  await page.locator('tr[data-name="x"] td', { hasText: '3' }).first().waitFor();
  await page.screenshot({ path: `${SHOTS}reconnected.png` });
});

test('the live page says clearly when its token has expired, and keeps the token in the tab\'s session storage', { skip: problem, timeout: 60_000 }, async (t) => {
  const secret = 'a-secret-of-at-least-thirty-two-bytes!';
  const { base, store } = await startServer(t, { auth: { secret, clockToleranceSeconds: 0 } });
  await store.createSession('s');
  const expired = await new SignJWT({ sessions: '*', scope: ['read', 'write'] }).setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(new TextEncoder().encode(secret));
  const page = await open(t, `${base}/`);
  await page.locator('#message', { hasText: 'HERALD_UNAUTHORIZED' }).waitFor();
  await page.locator('#token').fill(expired);
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.locator('#message', { hasText: /token was refused.*expired/ }).waitFor();
  assert.equal(await page.evaluate('sessionStorage.getItem("herald.token")'), expired);
  await page.screenshot({ path: `${SHOTS}expired-token.png` });
  const good = await new SignJWT({ sessions: '*', scope: ['read', 'write'] }).setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('1h').sign(new TextEncoder().encode(secret));
  await page.locator('#token').fill(good);
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByRole('button', { name: 'open session s' }).waitFor();
  assert.equal(await page.locator('#message').textContent(), '');
});

test('the live page is usable from the keyboard and in a narrow window', { skip: problem, timeout: 60_000 }, async (t) => {
  const { base } = await startServer(t);
  const page = await browser.newPage({ viewport: { width: 360, height: 700 } });
  t.after(() => page.close());
  await page.goto(`${base}/`);
  // Tab to the new-session field and create a session with the keyboard alone.
  await page.getByLabel('New session id').focus();
  await page.keyboard.type('kb');
  await page.keyboard.press('Enter');
  await page.getByRole('button', { name: 'open session kb' }).waitFor();
  const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
  assert.ok(overflow <= 0, `no horizontal scrolling at 360 px (overflow ${overflow} px)`);
  for (const label of ['Token (kept in this tab only; leave empty when the server asks for none)', 'New session id']) {
    assert.equal(await page.getByLabel(label).count(), 1, `the control labelled "${label}"`);
  }
  await page.screenshot({ path: `${SHOTS}narrow.png` });
});

test('while the server answers 503 (closing, its store down), an open page retries once at a time, waiting longer each time', { skip: problem, timeout: 60_000 }, async (t) => {
  const { createServer: createHttp } = await import('node:http');
  const { readFile } = await import('node:fs/promises');
  let watches = 0;
  const ui = new URL('../../ui/', import.meta.url);
  const files: Record<string, [string, string]> = { '/': ['index.html', 'text/html'], '/ui/app.js': ['app.js', 'text/javascript'], '/ui/style.css': ['style.css', 'text/css'] };
  const server = createHttp((request, response) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    const file = files[path];
    if (file !== undefined) return void readFile(new URL(file[0], ui)).then((body) => response.writeHead(200, { 'content-type': file[1] }).end(body));
    if (path === '/v1/sessions') return void response.writeHead(200, { 'content-type': 'application/json' }).end('[{"id":"s","createdAt":0,"expiresAt":null,"meta":null}]');
    if (path.endsWith('/watch')) watches++;
    response.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"HERALD_STORE","message":"the store is down"}}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => void server.close());
  const page = await open(t, `http://127.0.0.1:${(server.address() as { port: number }).port}/`);
  await page.getByRole('button', { name: 'open session s' }).click();
  await page.locator('#connection[data-state="reconnecting"]').waitFor();
  await new Promise((resolve) => setTimeout(resolve, 8000));
  // 1 s, 2 s, 4 s (±25 %) after the first: about four in 8 s; many more would be retries piling up.
  assert.ok(watches >= 2 && watches <= 6, `${watches} watch requests in 8 s`);
});
