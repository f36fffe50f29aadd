// Attacks on fallback chains, circuit breaking and model routing on a shared prefix (issue 14, issue 13
// item 4). Every test here FAILED on the code it was written against (bb4cd3f): each is one finding,
// named `attack: ...`, reproduced end to end against a real keypool on loopback with fault upstreams
// (test/helpers/chain.ts), a real redis-server where the store matters. All are fixed (96f194a and the
// cfg / wsroute merges) and kept as regression tests. Attacks the code withstood are in chain-holds.test.ts.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigObject } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { Circuit } from '../../src/proxy/circuit.js';
import { MemoryHub } from '../../src/state/memory-store.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { chainHarness, completion, secretOf, type ChainHarness } from '../helpers/chain.js';
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
async function chain(...args: Parameters<typeof chainHarness>): Promise<ChainHarness> {
  const h = await chainHarness(...args);
  open.push(h);
  return h;
}

const ok = (from: string) => () => act.afterBody(() => act.json(200, completion('gpt-4o', from)));
const down = () => act.json(503, { error: { message: 'upstream overloaded', type: 'server_error' } });
const limited = (seconds: number) => () => act.json(429, { error: { message: 'Rate limit reached for requests', type: 'requests' } }, { 'retry-after': String(seconds) });
const streamed = (from: string) => () => act.stream([JSON.stringify({ choices: [{ delta: { content: `from ${from}` } }] })]);
/** A member answering GET <prefix>/models with these ids, and chat completions otherwise. */
const lists = (from: string, ids: readonly string[]) => () =>
  act.afterBody((r) => (r.method === 'GET' ? act.json(200, { object: 'list', data: ids.map((id) => ({ id, object: 'model' })) }) : act.json(200, completion('gpt-4o', from))));


describe('reload and circuits', () => {
  it('attack: a reload that changes retry.connectTimeoutMs makes an in-flight request fail on its fallback and opens the healthy fallback’s circuit', async () => {
    // The request is stuck on the primary (a stream with no head yet) when the config is reloaded with
    // another connect timeout. reload.ts closes the old undici agent at once; the request's next attempt
    // (here: the fallback's first) is dispatched on that closed agent by serve-request.ts, fails in the
    // "connect" phase without a byte leaving keypool, and rotate.ts counts that local failure as a server
    // fault of the fallback: its circuit opens (and is published to every replica), the client gets 503
    // keypool_circuit_open, and for openMs every request for azure skips a perfectly healthy upstream.
    const h = await chain(
      [
        { name: 'primary', script: () => act.stallBeforeHeaders(), keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: streamed('azure'), keys: 1, config: { circuit: { failures: 1 } } },
      ],
      { retry: { streamHeadersTimeoutMs: 500 } },
    );
    const pending = h.call('/v1/chat/completions', { model: 'gpt-4o', stream: true, messages: [] });
    await waitFor(() => h.up.primary!.requests.length === 1);
    const cfg = h.app.config();
    h.app.reload({ ...cfg, retry: { ...cfg.retry, connectTimeoutMs: cfg.retry.connectTimeoutMs + 1 } });
    const r = await pending;
    expect(h.requestLines().at(-1)!.tried).toEqual(['primary/primary-1:headers_timeout:retry', 'azure-1:200:deliver']);
    expect(r.status).toBe(200);
    expect(r.text).toContain('from azure');
    expect(h.app.circuits.get('azure')!.state(Date.now())).toBe('closed');
  });

  it('attack: a circuit fact from the store with an `until` years ahead blocks the upstream for good: no probe after openMs', async () => {
    // Another replica (a clock running a year fast, a bug, anything that can write to Redis) shares an
    // opening far ahead. replication.ts applies it as it is and Circuit.openFor only ever extends: this
    // replica skips its own, healthy primary for ten years. Its own openings last openMs; a shared one
    // should be capped at this replica's now + openMs (then half-open and a probe, as usual).
    const clock = new FakeClock();
    const hub = new MemoryHub(() => clock.now());
    const other = hub.client();
    cleanups.push(() => other.close());
    const h = await chain(
      [
        { name: 'primary', script: ok('primary'), config: { fallbacks: [{ upstream: 'azure' }], circuit: { failures: 2, windowMs: 10_000, openMs: 5_000 } } },
        { name: 'azure', script: ok('azure') },
      ],
      { clock, store: hub.client() },
    );
    await other.publish({ kind: 'circuit', upstream: 'primary', until: clock.now() + 10 * 365 * 86_400_000 });
    await new Promise((r) => setImmediate(r));
    clock.advance(5_001);
    const r = await h.call();
    expect(h.app.circuits.get('primary')!.openUntil - clock.now()).toBeLessThanOrEqual(5_000);
    expect(r.headers['x-keypool-upstream']).toBeUndefined();
    expect(h.up.primary!.requests).toHaveLength(1);
  });

  it('attack: a malformed circuit fact (an `until` that is not a number) is stored in the circuit as it came', async () => {
    // Nothing checks a fact's shape before Circuit.openFor: a string or an array compares with numbers
    // by coercion, so it opens the circuit and sits in `openUntil` (typed number) as a string.
    const clock = new FakeClock();
    const hub = new MemoryHub(() => clock.now());
    const other = hub.client();
    cleanups.push(() => other.close());
    const h = await chain(
      [
        { name: 'primary', script: ok('primary'), config: { fallbacks: [{ upstream: 'azure' }], circuit: { failures: 2, windowMs: 10_000, openMs: 5_000 } } },
        { name: 'azure', script: ok('azure') },
      ],
      { clock, store: hub.client() },
    );
    await other.publish({ kind: 'circuit', upstream: 'primary', until: '99999999999999' as unknown as number });
    await new Promise((r) => setImmediate(r));
    expect(typeof h.app.circuits.get('primary')!.openUntil).toBe('number');
    expect(h.app.circuits.get('primary')!.state(clock.now())).toBe('closed');
  });

  it.skipIf(!redisAvailable())('attack (redis): a replica starting later loads a far-future circuit fact from Redis and skips its upstream for decades', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.kill());
    const prefix = `c${Math.random().toString(36).slice(2)}:`;
    const clock = new FakeClock(Date.now());
    const writer = new RedisStore({ url: redis.url, prefix, logger: createLogger('silent'), now: () => clock.now() });
    await writer.connect();
    cleanups.push(() => writer.close());
    await writer.publish({ kind: 'circuit', upstream: 'primary', until: clock.now() + 1e12 });
    const mine = new RedisStore({ url: redis.url, prefix, logger: createLogger('silent'), now: () => clock.now() });
    await mine.connect();
    const h = await chain(
      [
        { name: 'primary', script: ok('primary'), config: { fallbacks: [{ upstream: 'azure' }], circuit: { failures: 2, windowMs: 10_000, openMs: 5_000 } } },
        { name: 'azure', script: ok('azure') },
      ],
      { clock, store: mine },
    );
    // A day later (openMs is 5 s) the primary is still skipped.
    clock.advance(86_400_000);
    const r = await h.call();
    expect(r.headers['x-keypool-upstream']).toBeUndefined();
    expect(h.up.primary!.requests).toHaveLength(1);
    // A raw message with garbage for `until` is not taken either.
    const raw = new Redis(redis.url);
    cleanups.push(() => raw.quit());
    await raw.publish(`${prefix}events`, JSON.stringify({ origin: 'elsewhere', fact: { kind: 'circuit', upstream: 'azure', until: [1e300] } }));
    await new Promise((r) => setTimeout(r, 50));
    expect(typeof h.app.circuits.get('azure')?.openUntil).not.toBe('object');
  });

  it('attack: an open circuit closes without any probe when a request sent before it opened fails late and another then succeeds', () => {
    // failures 2: two faults open it. Requests already in flight when it opened still report: a late
    // fault lands in #faults (state open), and then a late success sees faults.length > 0 and closes the
    // circuit outright (circuit.ts success()). The README: only the half-open probe's answer closes it.
    const c = new Circuit({ failures: 2, windowMs: 10_000, openMs: 30_000 });
    c.fault(0);
    c.fault(1);
    expect(c.state(2)).toBe('open');
    c.fault(3);
    c.success(4);
    expect(c.state(5)).toBe('open');
  });
});

describe('routing on a shared prefix', () => {
  const token = 'kp-client-token-shared-prefix-0123456789';

  it('attack: GET /models on a shared prefix asks, with a pool key, a member the client may not use, and lists its models', async () => {
    // The client may use groq only. serve-request.ts sends GET /v1/models to every member (serveModelList
    // has no `allowed`): openai's key is spent on it and openai's catalogue handed to a client that
    // gets 403 for any of those models.
    const h = await chain(
      [
        { name: 'openai', script: lists('openai', ['gpt-4o']), config: { models: ['gpt-*'] } },
        { name: 'groq', script: lists('groq', ['llama-3.3-70b']), config: { prefix: '/v1' } },
      ],
      { clients: [{ name: 'agent', token, upstreams: ['groq'] }] },
    );
    const r = await h.call('/v1/models', undefined, { method: 'GET', headers: { authorization: `Bearer ${token}` } });
    expect(r.status).toBe(200);
    expect(h.up.openai!.requests).toHaveLength(0);
    expect(JSON.parse(r.text).data.map((m: { id: string }) => m.id)).toEqual(['llama-3.3-70b']);
  });

  it('attack: GET /models on a shared prefix where every member lists its models is refused 404 keypool_model_not_served', async () => {
    // "one may list none" is optional (load.ts checkPrefixes). serve-request.ts picks the member by the
    // body's model before it looks for GET <prefix>/models: a GET has no model, no member lists '', and the
    // union the README promises is never asked for. GET /v1/models/gpt-4o likewise never reaches openai.
    const h = await chain([
      { name: 'openai', script: lists('openai', ['gpt-4o']), config: { models: ['gpt-*'] } },
      { name: 'groq', script: lists('groq', ['llama-3.3-70b']), config: { prefix: '/v1', models: ['llama-*'] } },
    ]);
    const r = await h.call('/v1/models', undefined, { method: 'GET' });
    expect(JSON.parse(r.text).error?.code).toBeUndefined();
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).data.map((m: { id: string }) => m.id)).toEqual(['gpt-4o', 'llama-3.3-70b']);
    const one = await h.call('/v1/models/gpt-4o', undefined, { method: 'GET' });
    expect(one.status).toBe(200);
    expect(h.up.openai!.requests.map((q) => q.path)).toEqual(['/v1/models', '/v1/models/gpt-4o']);
  });

  it('attack: a WebSocket on a shared prefix goes to the member that does not serve its model, with that member’s key', async () => {
    // /v1 is shared: groq lists llama-*, openai lists gpt-*. The Realtime handshake names its model in
    // the query. app.ts routes upgrades with proxy.route(url)?.upstream, the prefix's default member (the
    // first, when every member lists models); websocket-proxy.ts never asks upstreamForModel.
    const h = await chain(
      [
        { name: 'groq', script: down, keys: 1, config: { models: ['llama-*'] } },
        { name: 'openai', script: down, keys: 1, config: { prefix: '/v1', models: ['gpt-*'] } },
      ],
      { retry: { maxRetries: 0 } },
    );
    const o = await openWs(`${h.url.replace('http://', 'ws://')}/v1/realtime?model=gpt-4o-realtime-preview`);
    if (o.kind === 'open') o.ws.terminate();
    expect(h.up.groq!.requests).toHaveLength(0);
    expect(h.up.openai!.requests).toHaveLength(1);
  });

  it('attack: GET /models on a shared prefix spends retry.maxRetries once per member, and x-keypool-attempts undercounts', async () => {
    // Two one-key members answering 503, maxRetries 2: the README's arithmetic gives at most 1 + 1 + 2 = 4
    // attempts for a request. serve-request.ts gives every member its own budget ({ charged: 0 }), so
    // 3 + 3 = 6 requests go out; model-list.ts returns the first member's outcome with its own count (3).
    const h = await chain([
      { name: 'openai', script: down, keys: 1, config: { models: ['gpt-*'] } },
      { name: 'groq', script: down, keys: 1, config: { prefix: '/v1' } },
    ]);
    const r = await h.call('/v1/models', undefined, { method: 'GET' });
    const sent = h.up.openai!.requests.length + h.up.groq!.requests.length;
    expect(r.headers['x-keypool-attempts']).toBe(String(sent));
    expect(sent).toBeLessThanOrEqual(1 + 1 + 2);
  });

  it('attack: every GET /models on a shared prefix is counted in keypool_fallbacks_total as a fallback from the first member', async () => {
    // The union's log record is { upstream: the default member, walked: every member }: traffic.ts sees
    // chain[0] (openai) != upstream (groq) and counts a fallback that never happened.
    const h = await chain([
      { name: 'openai', script: lists('openai', ['gpt-4o']), config: { models: ['gpt-*'] } },
      { name: 'groq', script: lists('groq', ['llama']), config: { prefix: '/v1' } },
    ]);
    expect((await h.call('/v1/models', undefined, { method: 'GET' })).status).toBe(200);
    const metrics = await h.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body.split('\n').filter((l) => l.startsWith('keypool_fallbacks_total{'))).toEqual([]);
  });
});

describe('what the client is told', () => {
  it('attack: a model name with a character no header may carry makes a fallback’s answer undeliverable after the fallback ran it', async () => {
    // {"model":"gpt-4o\n"} (or any character outside Latin-1, or %0A in a Gemini path): the primary 503s,
    // azure runs the request (billed) and answers 200. serve-request.ts puts the client's model, as it
    // is, in x-keypool-model; writeHead throws ERR_INVALID_CHAR in deliver.ts, which destroys the socket.
    // The client gets "other side closed" for an answer keypool had in hand.
    const h = await chain([
      { name: 'primary', script: down, keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
      { name: 'azure', script: ok('azure'), keys: 1 },
    ]);
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o\n', messages: [] }).catch((err: unknown) => ({ status: -1, text: String(err) }));
    expect(h.up.azure!.requests).toHaveLength(1);
    expect(r.status).toBe(200);
    expect(r.text).toContain('from azure');
  });

  it('attack: the same model name turns a fallback’s own error into 500 keypool_internal_error with no request log line', async () => {
    // Here azure's keys are rate-limited (Retry-After 5 s, past maxWaitMs 0): the chosen error is azure's
    // 429, res.setHeader('x-keypool-model', …) throws before sendError, and proxy-handler.ts answers 500.
    const h = await chain(
      [
        { name: 'primary', script: down, keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: limited(5), keys: 1 },
      ],
      { retry: { maxWaitMs: 0 } },
    );
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o\u{1F600}', messages: [] });
    expect(r.status).toBe(429);
    expect(JSON.parse(r.text).error.code).toBe('keypool_pool_exhausted');
    expect(h.requestLines()).toHaveLength(1);
  });
});

describe('arithmetic across a chain', () => {
  it('attack: retry.maxWaitMs bounds each target’s wait, not the request’s: a chain of three waits three times as long', async () => {
    // schema.ts: maxWaitMs is the "total time one request may spend waiting for a cooling key". Each
    // target's attempt loop (rotate.ts #waited) starts from 0, and walk-chain.ts shares only the budget:
    // three one-key upstreams, each key back 1 s after its 429, maxWaitMs 1.5 s: 1 s waited on each, 3 s.
    const clock = new FakeClock();
    const h = await chain(
      [
        { name: 'primary', script: limited(1), keys: 1, config: { fallbacks: [{ upstream: 'azure' }, { upstream: 'openrouter' }] } },
        { name: 'azure', script: limited(1), keys: 1 },
        { name: 'openrouter', script: limited(1), keys: 1 },
      ],
      { clock, retry: { maxWaitMs: 1_500, maxRetries: 6 } },
    );
    const r = await drive(clock, h.call());
    expect(r.status).toBe(429);
    const line = h.requestLines().at(-1)!;
    expect(line.waitMs as number).toBeLessThanOrEqual(1_500);
  });
});

describe('config', () => {
  const base = (extra: Record<string, unknown>) => ({
    upstreams: [{ name: 'a', baseUrl: 'http://127.0.0.1:9/v1', keys: [secretOf('a', 0)], ...extra }],
  });
  const refused = (raw: unknown): boolean => {
    try {
      loadConfigObject(raw, {});
      return false;
    } catch {
      return true;
    }
  };

  it('attack: the loader accepts a fallback back to the same upstream with the same model', () => {
    // load.ts checkChains checks only that targets exist and share the format. `{ upstream: a }` on a is
    // the same request to the same pool again: with one key answering 503 and maxRetries 2 that is
    // 1 + 1 + 2 = 4 sends where the upstream alone would make 3, for nothing another key could not do.
    expect(refused(base({ fallbacks: [{ upstream: 'a' }] }))).toBe(true);
    expect(refused(base({ fallbacks: [{ upstream: 'a', model: 'gpt-4o-mini' }], errorFallbacks: { contextLengthExceeded: [{ upstream: 'a' }] } }))).toBe(true);
  });
});

describe('policy (the integrator decides)', () => {
  it('attack (policy): a client limited to one model is served a bigger one by the context-length fallback', async () => {
    // clients[].models is checked against the request's own model only (client-gate refuseModel); the
    // walk checks mayUse (upstreams) for fallbacks but not the model a step rewrites to. A token allowed
    // only gpt-4o-mini sends a long prompt and gets gpt-4.1 (modelFallbacks do the same).
    const tokenOf = 'kp-client-token-cheap-models-0123456789';
    const tooLong = act.json(400, { error: { message: "This model's maximum context length is 128000 tokens.", type: 'invalid_request_error', code: 'context_length_exceeded' } });
    const h = await chain(
      [
        {
          name: 'primary',
          script: () => act.afterBody((r) => ((JSON.parse(r.body.toString()) as { model: string }).model === 'gpt-4.1' ? act.json(200, completion('gpt-4.1', 'primary')) : tooLong)),
          keys: 1,
          config: { errorFallbacks: { contextLengthExceeded: [{ upstream: 'primary', model: 'gpt-4.1' }] } },
        },
      ],
      { clients: [{ name: 'cheap', token: tokenOf, models: ['gpt-4o-mini'] }] },
    );
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] }, { headers: { authorization: `Bearer ${tokenOf}` } });
    expect(h.up.primary!.requests.map((q) => (JSON.parse(q.body.toString()) as { model: string }).model)).toEqual(['gpt-4o-mini']);
    expect(r.status).toBe(400);
  });
});
