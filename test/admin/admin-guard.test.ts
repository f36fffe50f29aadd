// Who gets into /admin and /metrics: with admin.token, only its holder (Bearer or x-api-key, any
// address); without one, loopback clients only. /readyz and the page itself are open. Refusals are
// OpenAI-shaped 401s that never echo what was sent.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { checkAdmin, isLoopback, presentedToken } from '../../src/admin/admin-guard.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { get, json, startAdminProxy, type AdminProxy } from './harness.js';

const TOKEN = 'admin-token-guard-eeeeeeeeeeeeeeeeeeee';
const KEY = 'sk-guard-pool-key-ffffffffffffffffffff';
const GUARDED = ['/admin/keys', '/admin/clients', '/admin/config', '/metrics'];
/** A token as the config loader may hold it: the secret kept inside, its sha256 shown. */
const TOKEN_OBJECT = { digest: createHash('sha256').update(TOKEN).digest('hex') };

let upstream: FakeUpstream | undefined;
let proxy: AdminProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

async function start(o: { adminToken?: string; host?: string } = {}): Promise<AdminProxy> {
  upstream = await startFakeUpstream();
  proxy = await startAdminProxy({ upstreams: [{ name: 'openai', baseUrl: `${upstream.url}/v1`, keys: [KEY] }], ...o });
  return proxy;
}

describe('checkAdmin (pure)', () => {
  const h = (headers: Record<string, string>) => headers;
  it.each([
    ['right bearer', { token: TOKEN }, h({ authorization: `Bearer ${TOKEN}` }), '10.0.0.5', true],
    ['right bearer, lower-case scheme', { token: TOKEN }, h({ authorization: `bearer ${TOKEN}` }), '10.0.0.5', true],
    ['right x-api-key', { token: TOKEN }, h({ 'x-api-key': TOKEN }), '10.0.0.5', true],
    ['right bearer against a token object', { token: TOKEN_OBJECT }, h({ authorization: `Bearer ${TOKEN}` }), '10.0.0.5', true],
    ['wrong bearer against a token object', { token: TOKEN_OBJECT }, h({ authorization: `Bearer ${TOKEN}x` }), '127.0.0.1', false],
    ['a token object’s digest sent as the token', { token: TOKEN_OBJECT }, h({ authorization: `Bearer ${TOKEN_OBJECT.digest}` }), '127.0.0.1', false],
    ['token configured: loopback alone is not enough', { token: TOKEN }, h({}), '127.0.0.1', false],
    ['wrong token', { token: TOKEN }, h({ authorization: `Bearer ${TOKEN}x` }), '127.0.0.1', false],
    ['a prefix of the token', { token: TOKEN }, h({ authorization: `Bearer ${TOKEN.slice(0, -1)}` }), '127.0.0.1', false],
    ['Basic scheme', { token: TOKEN }, h({ authorization: `Basic ${TOKEN}` }), '127.0.0.1', false],
    ['no token configured: 127.0.0.1', undefined, h({}), '127.0.0.1', true],
    ['no token configured: ::1', {}, h({}), '::1', true],
    ['no token configured: IPv4-mapped loopback', {}, h({}), '::ffff:127.0.0.1', true],
    ['no token configured: another address', {}, h({}), '10.0.0.5', false],
    ['no token configured: a LAN address with any token', {}, h({ authorization: `Bearer ${TOKEN}` }), '192.168.1.2', false],
    ['no token configured: no address', {}, h({}), undefined, false],
    ['token file named but not loaded: closed, even on loopback', { tokenFile: '/run/secrets/admin' }, h({}), '127.0.0.1', false],
  ] as const)('%s', (_name, settings, headers, address, ok) => {
    const v = checkAdmin(settings, headers, address);
    expect(v.ok).toBe(ok);
    if (!v.ok) {
      expect(v.error.status).toBe(401);
      expect(v.error.code).toBe('keypool_admin_unauthorized');
      expect(v.error.message).not.toContain(TOKEN);
    }
  });

  it('isLoopback knows exactly the loopback forms', () => {
    expect(['127.0.0.1', '::1', '::ffff:127.0.0.1'].every(isLoopback)).toBe(true);
    expect(['10.0.0.1', '::ffff:10.0.0.1', '0.0.0.0', '::', '', 'localhost', '127.0.0.1 '].some(isLoopback)).toBe(false);
  });

  it('presentedToken reads any bearer token or x-api-key, and never throws on hostile headers', () => {
    const token = fc.stringMatching(/^[!-~]{1,80}$/);
    fc.assert(
      fc.property(token, fc.constantFrom('Bearer', 'bearer', 'BEARER'), fc.constantFrom(' ', '  ', '\t'), (t, scheme, gap) => {
        expect(presentedToken({ authorization: `${scheme}${gap}${t}` })).toBe(t);
        expect(presentedToken({ 'x-api-key': t })).toBe(t);
      }),
    );
    fc.assert(
      fc.property(fc.string(), fc.string(), (auth, key) => {
        const got = presentedToken({ authorization: auth, 'x-api-key': key });
        expect(got === undefined || typeof got === 'string').toBe(true);
      }),
    );
    expect(presentedToken({ authorization: 'Bearer a b' })).toBeUndefined();
    expect(presentedToken({ authorization: 'Bearer' })).toBeUndefined();
  });
});

describe('the guard on a running keypool', () => {
  it('with admin.token: 401 without it or with a wrong one, 200 with it as Bearer or x-api-key', async () => {
    const p = await start({ adminToken: TOKEN });
    for (const path of GUARDED) {
      const none = await get(`${p.url}${path}`);
      expect(none.status, path).toBe(401);
      expect(json(none)).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'keypool_admin_unauthorized' } });
      expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
      expect((await get(`${p.url}${path}`, { headers: { authorization: 'Bearer wrong-token' } })).status).toBe(401);
      expect((await get(`${p.url}${path}`, { headers: { 'x-api-key': `${TOKEN}x` } })).status).toBe(401);
      expect((await get(`${p.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, path).toBe(200);
      expect((await get(`${p.url}${path}`, { headers: { 'x-api-key': TOKEN } })).status, path).toBe(200);
    }
    const action = await get(`${p.url}/admin/keys/openai-1/disable`, { method: 'POST' });
    expect(action.status).toBe(401);
    expect(p.app.pools.get('openai')!.usable).toBe(1);
  });

  it('without admin.token: loopback (127.0.0.1 and ::1) gets in, other addresses get 401', async () => {
    const p = await start();
    for (const path of GUARDED) expect((await get(`${p.url}${path}`)).status, path).toBe(200);
    for (const path of GUARDED) {
      const far = await p.app.inject({ method: 'GET', url: path, remoteAddress: '10.1.2.3' });
      expect(far.statusCode, path).toBe(401);
      expect(far.json()).toMatchObject({ error: { code: 'keypool_admin_unauthorized' } });
      const mapped = await p.app.inject({ method: 'GET', url: path, remoteAddress: '::ffff:127.0.0.1' });
      expect(mapped.statusCode, path).toBe(200);
    }
    const farAction = await p.app.inject({ method: 'POST', url: '/admin/keys/openai-1/disable', remoteAddress: '10.1.2.3' });
    expect(farAction.statusCode).toBe(401);
    expect(p.app.pools.get('openai')!.usable).toBe(1);
  });

  it('answers over IPv6 loopback', async () => {
    const p = await start({ host: '::1' });
    expect((await get(`${p.url}/admin/keys`)).status).toBe(200);
  });

  it('leaves /readyz, /healthz and the page itself open (they hold no data)', async () => {
    const p = await start({ adminToken: TOKEN });
    for (const path of ['/readyz', '/healthz', '/admin/']) {
      const r = await p.app.inject({ method: 'GET', url: path, remoteAddress: '10.1.2.3' });
      expect(r.statusCode, path).toBe(200);
    }
    const bare = await get(`${p.url}/admin`);
    expect(bare.status).toBe(308);
    expect(bare.headers.location).toBe('/admin/');
  });
});
