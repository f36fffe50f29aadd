// The status page as served: one self-contained document (no URL to anywhere, inline script and style
// pinned by the CSP's hashes), the same for everyone and holding no data, so it can be open.
import { createHash } from 'node:crypto';
import { Script } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { STATUS_PAGE_SCRIPT } from '../../src/admin/status-page-script.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { get, startAdminProxy, type AdminProxy } from './harness.js';

const KEY = 'sk-static-page-key-aaaaaaaaaaaaaaaaaaaa';
const TOKEN = 'admin-token-static-bbbbbbbbbbbbbbbbbbbb';

let upstream: FakeUpstream | undefined;
let proxy: AdminProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
});

const sha = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

describe('GET /admin/', () => {
  it('is one self-contained HTML document with a CSP pinning its inline script and style', async () => {
    upstream = await startFakeUpstream();
    proxy = await startAdminProxy({ upstreams: [{ name: 'openai', baseUrl: `${upstream.url}/v1`, keys: [KEY] }], adminToken: TOKEN });
    const r = await get(`${proxy.url}/admin/`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['cache-control']).toBe('no-store');
    const html = r.text;
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toContain(KEY);
    expect(html).not.toContain(TOKEN);

    const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
    expect(scripts).toEqual([STATUS_PAGE_SCRIPT]);
    expect(styles).toHaveLength(1);
    expect(html.match(/<script/g)).toHaveLength(1);
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain(`script-src ${sha(scripts[0]!)}`);
    expect(csp).toContain(`style-src ${sha(styles[0]!)}`);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    // It parses as a script (the browser test runs it).
    expect(() => new Script(STATUS_PAGE_SCRIPT)).not.toThrow();
    // Values reach the DOM as text only.
    expect(STATUS_PAGE_SCRIPT).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });
});
