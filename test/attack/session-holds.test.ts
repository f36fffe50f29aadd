// Attacks on the fixes for the chain findings (96753e3..HEAD) that the code withstood (1f36dbd): each is
// a `guard: ...` test that passes and must keep passing. End to end against a real keypool on loopback
// with fault upstreams (test/helpers/chain.ts), a FakeClock for waits, a real redis-server where the
// store matters. The attacks that broke the code are in session-findings.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { Circuit } from '../../src/proxy/circuit.js';
import { MemoryHub } from '../../src/state/memory-store.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { chainHarness, completion, type ChainHarness } from '../helpers/chain.js';
import { drive, FakeClock } from '../helpers/fake-clock.js';
import { act } from '../helpers/fault-upstream.js';
import { redisAvailable, startRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';
import { openWs } from '../proxy/websocket-helpers.js';

const open: ChainHarness[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  try {
    while (open.length > 0) await open.pop()!.close();
  } finally {
    while (cleanups.length > 0) await cleanups.pop()!();
  }
});

const token = 'kp-client-token-session-holds-0123456789';
const auth = { authorization: `Bearer ${token}` };

/** A harness whose close also searches everything logged for the client token. */
async function chain(...args: Parameters<typeof chainHarness>): Promise<ChainHarness> {
  const h = await chainHarness(...args);
  open.push({
    ...h,
    async close() {
      for (const l of h.logs) expect(l.includes(token), `the client token in ${l.slice(0, 200)}`).toBe(false);
      await h.close();
    },
  });
  return h;
}

const ok = (from: string, model = 'gpt-4o') => () => act.afterBody(() => act.json(200, completion(model, from)));
const down = () => act.json(503, { error: { message: 'upstream overloaded', type: 'server_error' } });
const limited = (seconds: number) => () => act.json(429, { error: { message: 'Rate limit reached for requests', type: 'requests' } }, { 'retry-after': String(seconds) });
const lists = (from: string, ids: readonly string[]) => () =>
  act.afterBody((r) => (r.method === 'GET' ? act.json(200, { object: 'list', data: ids.map((id) => ({ id, object: 'model' })) }) : act.json(200, completion('gpt-4o', from))));
const refusesWs = () => act.json(403, { error: { message: 'no realtime here', type: 'invalid_request_error' } });
const ws = (h: ChainHarness, path: string, headers: Record<string, string> = auth) => openWs(`${h.url.replace('http://', 'ws://')}${path}`, { headers });
const code = (text: string): unknown => (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;


describe('guard: shared circuit facts', () => {
  const circuit = { failures: 2, windowMs: 10_000, openMs: 5_000 };

  it('guard: an `until` of now + openMs + 1 is capped at now + openMs; negative, zero, now, NaN and Infinity are ignored', () => {
    const c = new Circuit(circuit);
    for (const until of [-1, 0, 1_000, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, '6001', null]) c.openFor(until, 1_000);
    expect(c.state(1_000)).toBe('closed');
    c.openFor(1_000 + 5_000 + 1, 1_000);
    expect(c.openUntil).toBe(6_000);
    expect(c.state(5_999)).toBe('open');
    expect(c.state(6_000)).not.toBe('open');
    // A later fact never shortens it, and never pushes it past the receiver's own now + openMs.
    c.openFor(2_000, 1_500);
    expect(c.openUntil).toBe(6_000);
    c.openFor(1e300, 1_500);
    expect(c.openUntil).toBe(6_500);
  });

  it('guard: published end to end, a fact one ms past openMs opens for openMs, then the primary is probed and serves', async () => {
    const clock = new FakeClock();
    const hub = new MemoryHub(() => clock.now());
    const other = hub.client();
    cleanups.push(() => other.close());
    const h = await chain(
      [
        { name: 'primary', script: ok('primary'), config: { fallbacks: [{ upstream: 'azure' }], circuit } },
        { name: 'azure', script: ok('azure') },
      ],
      { clock, store: hub.client() },
    );
    await other.publish({ kind: 'circuit', upstream: 'primary', until: clock.now() + circuit.openMs + 1 });
    await other.publish({ kind: 'circuit', upstream: 'azure', until: -5 });
    await new Promise((r) => setImmediate(r));
    expect(h.app.circuits.get('primary')!.openUntil).toBe(clock.now() + circuit.openMs);
    const during = await h.call();
    expect(during.headers['x-keypool-upstream']).toBe('azure');
    expect(h.up.primary!.requests).toHaveLength(0);
    clock.advance(circuit.openMs);
    const after = await h.call();
    expect(after.status).toBe(200);
    expect(after.headers['x-keypool-upstream']).toBeUndefined();
    expect(h.up.primary!.requests).toHaveLength(1);
  });

  it.skipIf(!redisAvailable())('guard (redis): a replica starting later caps a stored fact one ms past openMs at its own now + openMs', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.kill());
    const prefix = `s${Math.random().toString(36).slice(2)}:`;
    const clock = new FakeClock(Date.now());
    const writer = new RedisStore({ url: redis.url, prefix, logger: createLogger('silent'), now: () => clock.now() });
    await writer.connect();
    cleanups.push(() => writer.close());
    await writer.publish({ kind: 'circuit', upstream: 'primary', until: clock.now() + circuit.openMs + 1 });
    const mine = new RedisStore({ url: redis.url, prefix, logger: createLogger('silent'), now: () => clock.now() });
    await mine.connect();
    const h = await chain(
      [
        { name: 'primary', script: ok('primary'), config: { fallbacks: [{ upstream: 'azure' }], circuit } },
        { name: 'azure', script: ok('azure') },
      ],
      { clock, store: mine },
    );
    await waitFor(() => h.app.circuits.get('primary')!.state(clock.now()) === 'open');
    expect(h.app.circuits.get('primary')!.openUntil).toBeLessThanOrEqual(clock.now() + circuit.openMs);
    clock.advance(circuit.openMs);
    const r = await h.call();
    expect(r.headers['x-keypool-upstream']).toBeUndefined();
    expect(h.up.primary!.requests).toHaveLength(1);
  });
});

describe('guard: a reload during a wait', () => {
  it('guard: a reload (a new connect timeout) while a request waits in the room for a cooling key: it is served by that key afterwards', async () => {
    const clock = new FakeClock();
    const h = await chain(
      [
        { name: 'primary', script: (_r, attempt) => (attempt === 0 ? limited(1)() : ok('primary')()), keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: limited(60), keys: 1, config: { circuit: { failures: 1 } } },
      ],
      { clock, retry: { maxWaitMs: 5_000 } },
    );
    const pending = h.call();
    await waitFor(() => h.up.primary!.requests.length === 1);
    const cfg = h.app.config();
    h.app.reload({ ...cfg, retry: { ...cfg.retry, connectTimeoutMs: cfg.retry.connectTimeoutMs + 1 } });
    const r = await drive(clock, pending);
    expect(r.status).toBe(200);
    expect(r.text).toContain('from primary');
    expect(h.app.circuits.get('azure')!.state(clock.now())).toBe('closed');
  });
});

describe('guard: allow-lists on chains and model routes', () => {
  it('guard: a fallback to a model the client may not use is skipped: the primary’s own error, no x-keypool-model, the fallback model never named', async () => {
    const h = await chain(
      [
        { name: 'primary', script: down, keys: 1, config: { fallbacks: [{ upstream: 'azure', model: 'gpt-4.1-secret-deployment' }] } },
        { name: 'azure', script: ok('azure'), keys: 1 },
      ],
      { clients: [{ name: 'cheap', token, models: ['gpt-4o-mini'] }], retry: { maxRetries: 0 } },
    );
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] }, { headers: auth });
    expect(r.status).toBe(503);
    expect(h.up.azure!.requests).toHaveLength(0);
    expect(r.headers['x-keypool-model']).toBeUndefined();
    expect(r.headers['x-keypool-upstream']).toBeUndefined();
    expect(`${JSON.stringify(r.headers)} ${r.text}`).not.toContain('gpt-4.1-secret-deployment');
  });

  it('guard: GET /models/<id>: an id the client may not use is 403 and an id no member serves 404, neither sent upstream; an encoded slash routes by the decoded id', async () => {
    const h = await chain(
      [
        { name: 'openai', script: lists('openai', ['gpt-4o']), config: { models: ['gpt-*'] } },
        { name: 'groq', script: lists('groq', ['llama-3.3-70b']), config: { prefix: '/v1', models: ['llama-*'] } },
      ],
      { clients: [{ name: 'llama', token, models: ['llama-*'] }] },
    );
    const refused = await h.call('/v1/models/gpt-4o', undefined, { method: 'GET', headers: auth });
    expect([refused.status, code(refused.text)]).toEqual([403, 'keypool_client_forbidden']);
    const none = await h.call('/v1/models/mistral-large', undefined, { method: 'GET', headers: auth });
    expect([none.status, code(none.text)]).toEqual([404, 'keypool_model_not_served']);
    const slashed = await h.call('/v1/models/llama-org%2Fx', undefined, { method: 'GET', headers: auth });
    expect(slashed.status).toBe(200);
    expect(h.up.openai!.requests).toHaveLength(0);
    expect(h.up.groq!.requests.map((q) => q.path)).toEqual(['/v1/models/llama-org%2Fx']);
  });

  it('guard: GET /models on a shared prefix shares maxWaitMs across members: two members cooling 1 s wait at most 1.5 s in all', async () => {
    const clock = new FakeClock();
    const h = await chain(
      [
        { name: 'openai', script: limited(1), keys: 1, config: { models: ['gpt-*'] } },
        { name: 'groq', script: limited(1), keys: 1, config: { prefix: '/v1' } },
      ],
      { clock, retry: { maxWaitMs: 1_500, maxRetries: 6 } },
    );
    const r = await drive(clock, h.call('/v1/models', undefined, { method: 'GET' }));
    expect(r.status).toBe(429);
    expect(h.requestLines().at(-1)!.waitMs as number).toBeLessThanOrEqual(1_500);
  });
});

describe('guard: WebSocket ?model=', () => {
  it('guard: on one upstream with a models allow-list: an empty or missing model is 403, an allowed one percent-encoded is let through as written', async () => {
    const h = await chain([{ name: 'openai', script: refusesWs, keys: 1 }], { clients: [{ name: 'mini', token, models: ['gpt-4o-mini-realtime*'] }] });
    for (const path of ['/v1/realtime?model=', '/v1/realtime', '/v1/realtime?model=gpt-4o-realtime-preview', '/v1/realtime?model=gpt-4o-mini-realtime%00']) {
      const o = await ws(h, path);
      if (o.kind === 'open') o.ws.terminate();
      expect([path, o.kind === 'refused' ? o.status : 101]).toEqual([path, 403]);
    }
    expect(h.up.openai!.requests).toHaveLength(0);
    const o = await ws(h, '/v1/realtime?model=gpt%2D4o-mini-realtime-preview');
    if (o.kind === 'open') o.ws.terminate();
    expect(h.up.openai!.requests.map((q) => q.path)).toEqual(['/v1/realtime?model=gpt%2D4o-mini-realtime-preview']);
  });

  it('guard: on a shared prefix a percent-encoded model routes to the member serving it, with that member’s key; the client may use only its upstream', async () => {
    const h = await chain(
      [
        { name: 'groq', script: refusesWs, keys: 1, config: { models: ['llama-*'] } },
        { name: 'openai', script: refusesWs, keys: 1, config: { prefix: '/v1', models: ['gpt-*'] } },
      ],
      { clients: [{ name: 'groq-only', token, upstreams: ['groq'] }] },
    );
    const refused = await ws(h, '/v1/realtime?model=gpt%2D4o-realtime-preview');
    if (refused.kind === 'open') refused.ws.terminate();
    expect(refused.kind === 'refused' ? refused.status : 101).toBe(403);
    const routed = await ws(h, '/v1/realtime?model=llama%2D3');
    if (routed.kind === 'open') routed.ws.terminate();
    expect(h.up.openai!.requests).toHaveLength(0);
    expect(h.up.groq!.requests.map((q) => q.key)).toEqual([h.secrets.groq![0]]);
  });
});
