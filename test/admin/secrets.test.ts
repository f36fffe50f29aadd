// No pool key and no admin token in anything the admin surface says: every admin answer (refusals
// included), /metrics, /readyz, the page and the log lines, after traffic in which the upstream echoes
// the keys back and clients send tokens where keypool does not expect them.
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { get, startAdminProxy, type AdminProxy } from './harness.js';

const KEYS = ['sk-proj-ADMINSECRETaaaaaaaaaaaaaaaaaaaa1', 'sk-proj-ADMINSECRETbbbbbbbbbbbbbbbbbbbb2', 'plainadminsecretcccccccccccc3'];
const TOKEN = 'admin-token-SECRET-dddddddddddddddddddd';
/** What a caller guessing at the admin token sends: must not come back either. */
const GUESS = 'guess-token-SECRET-eeeeeeeeeeeeeeeeeeee';
const SECRETS = [...KEYS, TOKEN, GUESS];

let upstream: FakeUpstream | undefined;
let proxy: AdminProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
});

describe('secrets never leave through the admin surface', () => {
  it('in admin answers, metrics, readiness, the page and the logs', async () => {
    upstream = await startFakeUpstream();
    proxy = await startAdminProxy({ upstreams: [{ name: 'openai', baseUrl: `${upstream.url}/v1`, keys: KEYS }], adminToken: TOKEN, retry: { maxRetries: 1, backoffBaseMs: 0, maxWaitMs: 0 } });
    const p = proxy;
    const echo = (status: number, secret: string) => ({
      kind: 'status' as const,
      status,
      body: JSON.stringify({ error: { message: `Incorrect API key provided: ${secret}`, code: 'x' } }),
      headers: { 'x-echo': secret, 'retry-after': '30' },
    });
    upstream.script(KEYS[0]!, echo(429, KEYS[0]!));
    upstream.script(KEYS[1]!, echo(402, KEYS[1]!));
    upstream.script(KEYS[2]!, echo(401, KEYS[2]!));
    const captured: string[] = [];
    const call = (path: string, init: Parameters<typeof get>[1] = {}) => get(`${p.url}${path}`, init, captured);
    // Client requests carrying tokens of their own (a client that sends a pool key, or the admin token, to the proxy).
    await call('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, 'x-agent-id': 'agent-1' }, body: '{"model":"gpt-4o"}' });
    await call('/v1/models', { headers: { 'x-api-key': KEYS[0]! } });

    const auth = { authorization: `Bearer ${TOKEN}` };
    for (const path of ['/admin/keys', '/admin/clients', '/admin/config', '/metrics']) {
      await call(path, { headers: auth });
      await call(path, { headers: { authorization: `Bearer ${GUESS}` } });
      await call(path, { headers: { 'x-api-key': GUESS } });
    }
    for (const a of ['disable', 'enable', 'reset']) await call(`/admin/keys/openai-1/${a}`, { method: 'POST', headers: auth });
    await call('/admin/keys/openai-9/disable', { method: 'POST', headers: auth });
    await call(`/admin/keys/${encodeURIComponent(GUESS)}/disable`, { method: 'POST', headers: auth });
    await call('/readyz');
    await call('/admin/');
    await call('/admin');
    expect(captured.length).toBeGreaterThan(40);
    const everything = [...captured, ...p.logs].join('\n');
    for (const s of SECRETS) {
      expect(everything).not.toContain(s);
      expect(everything).not.toContain(s.slice(8, 24));
    }
  });
});
