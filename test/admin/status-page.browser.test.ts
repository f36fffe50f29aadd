// The status page in a real browser (Debian's chromium, driven by playwright-core): keypool and the
// fake upstream on loopback; the page asks for the admin token, then shows the keys while they change
// state (a 429 out of credit, an operator's disable, an enable): the badge, the cooldown bar
// shrinking, the per-minute counts, the clients. A client name made of HTML stays text. A screenshot
// goes to test-output/. Skipped, saying so, only when chromium is absent and KEYPOOL_REQUIRE_BROWSER
// is not set.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { chatBody, get, startAdminProxy, type AdminProxy } from './harness.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const OUTPUT = new URL('../../test-output/', import.meta.url);
const have = existsSync(CHROMIUM);
const required = process.env.KEYPOOL_REQUIRE_BROWSER !== undefined && process.env.KEYPOOL_REQUIRE_BROWSER !== '';
if (!have && !required) console.warn(`status page browser test skipped: ${CHROMIUM} not found (apt-get install chromium, or set KEYPOOL_REQUIRE_BROWSER=1 to make this a failure)`);

const KEYS = ['sk-page-key-zero-0aaaaaaaaaaaaaaaaaaaaa', 'sk-page-key-one-1bbbbbbbbbbbbbbbbbbbbb', 'sk-page-key-two-2cccccccccccccccccccc'];
const TOKEN = 'admin-token-page-dddddddddddddddddddd';
const HOSTILE_CLIENT = '<img src=x onerror="document.title=1">agent';
/** Bound on every wait for the page to show something: it polls once a second. */
const SHOW_MS = 10_000;

let upstream: FakeUpstream;
let proxy: AdminProxy;
let context: BrowserContext;
let page: Page;
let profile: string;

describe.skipIf(!have && !required)('status page in headless chromium', () => {
  beforeAll(async () => {
    if (!have) throw new Error(`KEYPOOL_REQUIRE_BROWSER is set but ${CHROMIUM} is missing`);
    upstream = await startFakeUpstream({ rateLimit: { requests: 500, windowMs: 60_000 } });
    proxy = await startAdminProxy({ upstreams: [{ name: 'openai', baseUrl: `${upstream.url}/v1`, keys: KEYS }], adminToken: TOKEN, retry: { backoffBaseMs: 0 }, cooldown: { outOfCreditMs: 60_000 } });
    profile = mkdtempSync(join(tmpdir(), 'keypool-chromium-'));
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1280, height: 620 } });
    page = context.pages()[0] ?? (await context.newPage());
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await proxy?.close();
    await upstream?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  const row = (key: string) => page.locator(`tr[data-key="openai/${key}"]`);
  const badge = (key: string) => row(key).locator('.badge');
  async function shows(what: () => Promise<boolean>, label: string): Promise<void> {
    const end = Date.now() + SHOW_MS;
    while (!(await what())) {
      if (Date.now() > end) throw new Error(`the page did not show: ${label}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const text = async (loc: ReturnType<Page['locator']>) => ((await loc.count()) > 0 ? ((await loc.first().textContent()) ?? '') : '');
  const fillWidth = (key: string) => row(key).locator('.bar .fill').evaluate((e) => parseFloat((e as unknown as { style: { width: string } }).style.width));
  const traffic = (client: string, init: { path?: string; body?: string } = {}) =>
    get(`${proxy.url}${init.path ?? '/v1/chat/completions'}`, init.body === undefined && init.path !== undefined ? { headers: { 'x-agent-id': client } } : { method: 'POST', headers: { 'content-type': 'application/json', 'x-agent-id': client }, body: init.body ?? chatBody() });

  it('asks for the admin token, keeps it for the session, then shows every key', async () => {
    await page.goto(`${proxy.url}/admin/`);
    await page.locator('#login').waitFor({ state: 'visible', timeout: SHOW_MS });
    expect(await page.locator('#login-msg').textContent()).toContain('admin token');
    await page.fill('#token', 'wrong-token');
    await page.click('#login button');
    await page.locator('#login').waitFor({ state: 'visible', timeout: SHOW_MS });
    await page.fill('#token', TOKEN);
    await page.click('#login button');
    await shows(async () => (await row('openai-3').count()) === 1, 'three key rows');
    expect(await page.locator('tr[data-key]').count()).toBe(3);
    for (const k of ['openai-1', 'openai-2', 'openai-3']) expect(await text(badge(k))).toBe('ok');
    // A string: the test's types have no DOM.
    expect(await page.evaluate("sessionStorage.getItem('keypool.adminToken')")).toBe(TOKEN);
    expect(await page.inputValue('#token')).toBe('');
    expect(await text(page.locator('#conn'))).toBe('live');
  });

  it('shows a 429 out of credit as cooling, with a bar that shrinks, and counts it per minute', async () => {
    // Out of credit is key-wide (a rate limit cools one model, listed under the key), so the key itself is cooling.
    upstream.script(KEYS[0]!, { kind: 'insufficient_quota' });
    expect((await traffic('agent-a', { path: '/v1/models' })).status).toBe(200);
    await shows(async () => (await text(badge('openai-1'))) === 'cooling', 'openai-1 cooling');
    expect(await text(row('openai-1').locator('.reason'))).toBe('out of credit');
    await shows(async () => (await row('openai-1').locator('.bar').count()) === 1, 'a cooldown bar');
    const first = await fillWidth('openai-1');
    expect(first).toBeGreaterThan(90);
    expect(first).toBeLessThanOrEqual(100);
    await shows(async () => (await fillWidth('openai-1')) < first - 1, 'the bar shrinking');
    expect(await text(row('openai-1').locator('.left'))).toMatch(/^\d+ s$/);
    await shows(async () => (await text(row('openai-1').locator('.r429'))) === '1', '1 429 per minute');
    expect(await text(row('openai-1').locator('.rpm'))).toBe('1');
    expect(await text(row('openai-2').locator('.rpm'))).toBe('1');
    expect(await text(badge('openai-2'))).toBe('ok');
    expect(await row('openai-2').locator('.bar').count()).toBe(0);
  });

  it('shows an operator’s disable and enable as they happen, and the clients as text', async () => {
    const off = await get(`${proxy.url}/admin/keys/openai-2/disable`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(off.status).toBe(200);
    await shows(async () => (await text(badge('openai-2'))) === 'disabled', 'openai-2 disabled');
    expect(await text(row('openai-2').locator('.reason'))).toBe('admin');
    expect(await row('openai-2').locator('.bar').count()).toBe(0);
    for (let i = 0; i < 3; i++) expect((await traffic(HOSTILE_CLIENT)).status).toBe(200);
    await shows(async () => (await text(page.locator('tr[data-client] .cname').first())) === HOSTILE_CLIENT, 'the hostile client row');
    const hostile = page.locator('tr[data-client]').first();
    expect(await text(hostile.locator('.requests'))).toBe('3');
    expect(await text(hostile.locator('.s2xx'))).toBe('3');
    expect(await page.locator('#clients img').count()).toBe(0);
    expect(await page.title()).toBe('keypool status');
    await shows(async () => (await text(row('openai-3').locator('.requests'))) === '3', 'openai-3 serving while openai-1 cools and openai-2 is off');

    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: new URL('status-page.png', OUTPUT).pathname, fullPage: true });

    await get(`${proxy.url}/admin/keys/openai-2/enable`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    await shows(async () => (await text(badge('openai-2'))) === 'ok', 'openai-2 ok again');
    expect(await text(badge('openai-1'))).toBe('cooling');
  });

  it('drops the row of a key that is no longer listed (a reload removed it) and shows it again when it is back', async () => {
    await page.route('**/admin/keys', async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as { upstreams: { keys: { name: string }[] }[] };
      body.upstreams[0]!.keys = body.upstreams[0]!.keys.filter((k) => k.name !== 'openai-2');
      await route.fulfill({ response, json: body });
    });
    await shows(async () => (await row('openai-2').count()) === 0, 'openai-2 gone');
    expect(await page.locator('tr[data-key]').count()).toBe(2);
    expect(await text(badge('openai-1'))).toBe('cooling');
    await page.unroute('**/admin/keys');
    await shows(async () => (await row('openai-2').count()) === 1, 'openai-2 back');
    const order = await page.locator('tr[data-key]').evaluateAll((rows) => rows.map((r) => (r as unknown as { dataset: { key: string } }).dataset.key));
    expect(order).toEqual(['openai/openai-1', 'openai/openai-2', 'openai/openai-3']);
  });

  it('puts no secret in the page, and the page made no request to any other origin', async () => {
    const html = await page.content();
    for (const s of [...KEYS, TOKEN]) {
      expect(html).not.toContain(s);
      expect(html).not.toContain(s.slice(8, 24));
    }
    const origins = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => new URL(e.name).origin));
    for (const o of origins) expect(o).toBe(new URL(proxy.url).origin);
    for (const s of [...KEYS, TOKEN]) expect(proxy.logs.join('\n')).not.toContain(s);
  });
});
