// Attacks on issue 15's lean hot path (86aa2fd: a lazy AbortController, a streamed head written as one
// flat header list, the request id stamped late, the usage body read once, the bearer built once per
// key, headers copied per target only for chains, a single-step chain fast path, log fields built only
// at level info) that the code withstood: each `guard: ...` test passes and must keep passing. End to end
// against a real keypool on loopback with fault upstreams; a FakeClock where waits matter. The attacks
// that broke the code are in perf-findings.test.ts.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import { loadConfigObject } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { chainHarness, completion, type ChainHarness } from '../helpers/chain.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { act, startFaultUpstream, type FaultUpstream } from '../helpers/fault-upstream.js';
import { startProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';
import { startRawUpstream } from './raw-upstream.js';

const open: ChainHarness[] = [];
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  try {
    while (open.length > 0) await open.pop()!.close();
  } finally {
    while (closers.length > 0) await closers.pop()!();
  }
});

async function chain(...args: Parameters<typeof chainHarness>): Promise<ChainHarness> {
  const h = await chainHarness(...args);
  open.push(h);
  return h;
}

const ok = (from: string) => () => act.afterBody(() => act.json(200, completion('gpt-4o', from)));
const down = () => act.json(503, { error: { message: 'upstream overloaded', type: 'server_error' } });
const RID = 'client-rid-perf-0001';
const withRid = { headers: { 'x-request-id': RID } };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Every pool's in-flight count and every room's size, by upstream: all zero when nothing is held. */
function held(h: ChainHarness): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pool] of h.app.pools) out[name] = pool.states().reduce((n, s) => n + s.inflight, 0) + h.app.rooms.get(name)!.size;
  return out;
}
const nothingHeld = (h: ChainHarness): Record<string, number> => Object.fromEntries([...h.app.pools.keys()].map((n) => [n, 0]));

/** A POST the test can abandon; resolves 'aborted' when it is. */
function abandonable(url: string, body: unknown = { model: 'gpt-4o', messages: [] }): { abort: () => void; done: Promise<unknown> } {
  const ctl = new AbortController();
  const done = fetch(url, { method: 'POST', signal: ctl.signal, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    .then((r) => r.text())
    .catch(() => 'aborted');
  return { abort: () => ctl.abort(), done };
}

/** Moves a fake clock on while `p` is pending, bounded in steps. */
async function drive<T>(clock: FakeClock, p: Promise<T>, stepMs = 100): Promise<T> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 2_000 && !settled; i++) {
    await new Promise((r) => setTimeout(r, 1));
    clock.advance(stepMs);
  }
  return p;
}

/** Walks a JSON value for the object naming this key, and returns its token counts. */
function tokensOf(json: unknown, key: string): { tokensIn: unknown; tokensOut: unknown } | undefined {
  if (json === null || typeof json !== 'object') return undefined;
  const o = json as Record<string, unknown>;
  if (o.name === key && 'tokensIn' in o) return { tokensIn: o.tokensIn, tokensOut: o.tokensOut };
  for (const v of Object.values(o)) {
    const found = tokensOf(v, key);
    if (found !== undefined) return found;
  }
  return undefined;
}
async function adminTokens(url: string, key: string) {
  const r = await request(`${url}/admin/keys`);
  return tokensOf(await r.body.json(), key);
}

describe('guard: one x-keypool-request-id on every response path', () => {
  it('guard: a delivered answer, an answer read whole, an error and a stream each carry the client’s id once', async () => {
    let mode = 'ok';
    const h = await chain([
      {
        name: 'primary',
        keys: 1,
        script: () =>
          mode === 'ok'
            ? act.json(200, completion('gpt-4o', 'p'))
            : mode === 'bad'
              ? act.json(400, { error: { message: 'bad request', type: 'invalid_request_error' } })
              : mode === 'stream'
                ? act.stream(['{"choices":[{"delta":{"content":"hi"}}]}'])
                : down(),
      },
    ]);
    for (const m of ['ok', 'bad', 'stream', 'down']) {
      mode = m;
      const r = await h.call('/v1/chat/completions', { model: 'gpt-4o', messages: [], stream: m === 'stream' }, withRid);
      expect({ m, id: r.headers['x-keypool-request-id'] }).toEqual({ m, id: RID });
    }
  });

  it('guard: without a client id, a generated one (a UUID), once', async () => {
    const h = await chain([{ name: 'primary', keys: 1, script: ok('p') }]);
    const a = await h.call();
    const b = await h.call();
    expect(a.headers['x-keypool-request-id']).toMatch(UUID);
    expect(b.headers['x-keypool-request-id']).toMatch(UUID);
    expect(a.headers['x-keypool-request-id']).not.toBe(b.headers['x-keypool-request-id']);
  });

  it('guard: refusals before the body (no client token, too many header fields) carry the id once', async () => {
    const token = 'kp-client-token-perf-holds-0123456789';
    const h = await chain([{ name: 'primary', keys: 1, script: ok('p') }], { clients: [{ name: 'agent', token }] });
    const refused = await h.call('/v1/chat/completions', undefined, { headers: { 'x-request-id': RID, authorization: 'Bearer nope-not-a-token' } });
    expect(refused.status).toBe(401);
    expect(refused.headers['x-keypool-request-id']).toBe(RID);
    const many = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`x-filler-${i}`, 'v']));
    const bad = await h.call('/v1/chat/completions', undefined, { headers: { 'x-request-id': RID, authorization: `Bearer ${token}`, ...many } });
    expect(bad.status).toBe(431);
    expect(bad.headers['x-keypool-request-id']).toBe(RID);
    expect(h.up.primary!.requests).toHaveLength(0);
  });

  it('guard: a keep-alive stream that then fails (a 400 after the wait) has one id on its one head', async () => {
    const clock = new FakeClock();
    const h = await chain(
      [{ name: 'primary', keys: 1, script: (_r, _a, perKey) => (perKey === 0 ? act.json(429, { error: { message: 'Rate limit reached for requests' } }, { 'retry-after': '2' }) : act.json(400, { error: { message: 'bad request', type: 'invalid_request_error' } })) }],
      { clock, queue: { streamKeepAlive: true, keepAliveIntervalMs: 1_000 }, retry: { maxWaitMs: 30_000 } },
    );
    // The key cools, the request waits with keep-alive committed (the head goes out then), then fails.
    const r = await drive(clock, h.call('/v1/chat/completions', { model: 'gpt-4o', messages: [], stream: true }, withRid));
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-keep-alive']).toBe('1');
    expect(r.headers['x-keypool-request-id']).toBe(RID);
    expect(r.text).toContain('event: error');
    expect(held(h)).toEqual(nothingHeld(h));
  });

  it('guard: a keep-alive stream that then is served has one id (no second head)', async () => {
    const clock = new FakeClock();
    const h = await chain(
      [{ name: 'primary', keys: 1, script: (_r, _a, perKey) => (perKey === 0 ? act.json(429, { error: { message: 'Rate limit reached for requests' } }, { 'retry-after': '2' }) : act.stream(['{"choices":[{"delta":{"content":"late"}}]}'])) }],
      { clock, queue: { streamKeepAlive: true, keepAliveIntervalMs: 1_000 }, retry: { maxWaitMs: 30_000 } },
    );
    const r = await drive(clock, h.call('/v1/chat/completions', { model: 'gpt-4o', messages: [], stream: true }, withRid));
    expect(r.status).toBe(200);
    expect(r.text).toContain('late');
    expect(r.headers['x-keypool-request-id']).toBe(RID);
  });

  it('guard: the deadline firing during an attempt (no AbortSignal ever made) answers 504 with the id and closes the upstream socket', async () => {
    const clock = new FakeClock();
    const h = await chain([{ name: 'primary', keys: 1, script: () => act.stallBeforeHeaders() }], { clock, retry: { timeoutMs: 5_000, headersTimeoutMs: 600_000 } });
    const p = h.call('/v1/chat/completions', undefined, withRid);
    await waitFor(() => h.up.primary!.requests.length === 1 && h.up.primary!.requests[0]!.complete);
    clock.advance(5_001);
    const r = await p;
    expect(r.status).toBe(504);
    expect(r.headers['x-keypool-request-id']).toBe(RID);
    await waitFor(() => h.up.primary!.openSockets === 0);
    expect(held(h)).toEqual(nothingHeld(h));
  });
});

describe('guard: cancellation without an AbortController up front', () => {
  it('guard: a client leaving mid-attempt (the signal never created) cancels the attempt and frees the lease', async () => {
    const h = await chain([{ name: 'primary', keys: 1, script: () => act.stallBeforeHeaders() }], { retry: { headersTimeoutMs: 600_000, timeoutMs: 600_000 } });
    const c = abandonable(`${h.url}/v1/chat/completions`);
    await waitFor(() => h.up.primary!.requests.length === 1 && h.up.primary!.requests[0]!.complete);
    c.abort();
    expect(await c.done).toBe('aborted');
    await waitFor(() => h.up.primary!.openSockets === 0);
    await waitFor(() => h.requestLines().length === 1);
    expect(h.requestLines()[0]!.status).toBe(499);
    expect(held(h)).toEqual(nothingHeld(h));
  });

  it('guard: a client leaving while it waits in the room (the signal made for the wait) leaves the room and holds nothing', async () => {
    const clock = new FakeClock();
    const h = await chain([{ name: 'primary', keys: 1, script: () => act.json(429, { error: { message: 'Rate limit reached for requests' } }, { 'retry-after': '20' }) }], { clock, retry: { maxWaitMs: 30_000 } });
    const c = abandonable(`${h.url}/v1/chat/completions`);
    await waitFor(() => h.app.rooms.get('primary')!.size === 1);
    c.abort();
    expect(await c.done).toBe('aborted');
    await waitFor(() => h.app.rooms.get('primary')!.size === 0);
    await waitFor(() => h.requestLines().length === 1);
    expect(h.requestLines()[0]!.status).toBe(499);
    expect(held(h)).toEqual(nothingHeld(h));
    // The key frees later: nobody is sent for the one who left.
    clock.advance(30_000);
    await new Promise((r) => setTimeout(r, 20));
    expect(h.up.primary!.requests).toHaveLength(1);
  });

  it('guard: a client leaving during a backoff sleep ends the sleep; no attempt follows', async () => {
    const clock = new FakeClock();
    const h = await chain([{ name: 'primary', keys: 1, script: down }], { clock, retry: { maxRetries: 3, backoffBaseMs: 10_000, backoffMaxMs: 10_000, timeoutMs: 600_000 } });
    const c = abandonable(`${h.url}/v1/chat/completions`);
    await clock.waitForSleepers(1);
    const attempts = h.up.primary!.requests.length;
    c.abort();
    expect(await c.done).toBe('aborted');
    await waitFor(() => clock.sleepers === 0);
    await waitFor(() => h.requestLines().length === 1);
    expect(h.requestLines()[0]!.status).toBe(499);
    clock.advance(60_000);
    await new Promise((r) => setTimeout(r, 20));
    expect(h.up.primary!.requests.length).toBe(attempts);
    expect(held(h)).toEqual(nothingHeld(h));
  });

  it('guard: shutdown cutting a request that waits in an attempt answers 503 with the id', async () => {
    const h = await chain([{ name: 'primary', keys: 1, script: () => act.stallBeforeHeaders() }], { retry: { headersTimeoutMs: 600_000, timeoutMs: 600_000 } });
    const p = h.call('/v1/chat/completions', undefined, withRid);
    await waitFor(() => h.up.primary!.requests.length === 1 && h.up.primary!.requests[0]!.complete);
    expect(h.app.proxy.cutAll('is shutting down')).toBe(1);
    const r = await p;
    expect(r.status).toBe(503);
    expect(r.headers['x-keypool-request-id']).toBe(RID);
    expect(held(h)).toEqual(nothingHeld(h));
  });
});

describe('guard: the flat header list', () => {
  it('guard: repeated upstream headers (set-cookie, a duplicate) pass as they came; Connection-listed and hop-by-hop ones do not', async () => {
    const body = JSON.stringify(completion('gpt-4o', 'raw'));
    const raw =
      'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nset-cookie: a=1; Path=/\r\nset-cookie: b=2; Path=/\r\nx-dup: one\r\nx-dup: two\r\n' +
      `connection: x-hop, keep-alive\r\nx-hop: hop-value\r\nproxy-authenticate: Basic\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const h = await chain([{ name: 'primary', keys: 1, script: () => act.afterBody(() => act.raw(raw, 'end')) }]);
    const r = await h.call('/v1/chat/completions', undefined, withRid);
    expect(r.status).toBe(200);
    expect(r.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
    expect(([] as string[]).concat(r.headers['x-dup'] ?? []).join(', ')).toBe('one, two');
    expect(r.headers['x-hop']).toBeUndefined();
    expect(r.headers['proxy-authenticate']).toBeUndefined();
    expect(r.headers['x-keypool-request-id']).toBe(RID);
    expect(r.headers['x-keypool-attempts']).toBe('1');
    expect(r.headers['x-keypool-key']).toBe('primary-1');
  });

  it('guard: a fallback’s answer says which upstream and model once each, beside one id', async () => {
    const h = await chain([
      { name: 'primary', keys: 1, script: down, config: { fallbacks: [{ upstream: 'second', model: 'gpt-4o-mini' }] } },
      { name: 'second', keys: 1, script: () => act.stream(['{"choices":[{"delta":{"content":"x"}}]}']) },
    ]);
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o', messages: [], stream: true }, withRid);
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-upstream']).toBe('second');
    expect(r.headers['x-keypool-model']).toBe('gpt-4o-mini');
    expect(r.headers['x-keypool-request-id']).toBe(RID);
  });
});

describe('guard: headers per target', () => {
  it('guard: the first target’s key header and default headers never reach a fallback with another auth header', async () => {
    const h = await chain([
      { name: 'primary', keys: 1, script: down, config: { headers: { 'x-primary-only': 'p' }, fallbacks: [{ upstream: 'second' }] } },
      { name: 'second', keys: 1, script: ok('second'), config: { authHeader: 'x-api-key', headers: { 'x-second-only': 's' } } },
    ]);
    const r = await h.call();
    expect(r.status).toBe(200);
    const got = h.up.second!.requests[0]!.headers;
    expect(got['authorization']).toBeUndefined();
    expect(got['x-primary-only']).toBeUndefined();
    expect(got['x-api-key']).toBe(h.secrets.second![0]);
    expect(got['x-second-only']).toBe('s');
    // And the primary never saw the second's.
    for (const req of h.up.primary!.requests) expect(req.headers['x-api-key']).toBeUndefined();
  });

  it('guard: a chain of three alternating auth headers: each target sees only its own key', async () => {
    const h = await chain([
      { name: 'primary', keys: 1, script: down, config: { fallbacks: [{ upstream: 'second' }, { upstream: 'third' }] } },
      { name: 'second', keys: 1, script: down, config: { authHeader: 'x-api-key' } },
      { name: 'third', keys: 1, script: ok('third') },
    ]);
    const r = await h.call();
    expect(r.status).toBe(200);
    for (const req of h.up.third!.requests) {
      expect(req.headers['x-api-key']).toBeUndefined();
      expect(req.headers['authorization']).toBe(`Bearer ${h.secrets.third![0]}`);
    }
  });
});

describe('guard: the bearer built once per key', () => {
  it('guard: a reload that changes a key’s secret (same name) sends the new bearer, never the old', async () => {
    const OLD = 'sk-perf-reload-old-secret-0000000001';
    const NEW = 'sk-perf-reload-new-secret-0000000002';
    const up: FaultUpstream = await startFaultUpstream(() => act.afterBody(() => act.json(200, completion('gpt-4o', 'u'))));
    closers.push(() => up.close());
    const proxy = await startProxy({ upstreamUrl: up.url, keys: [{ name: 'k', key: OLD }] });
    closers.push(() => proxy.close());
    const chat = async () => (await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"gpt-4o"}' })).body.text();
    await chat();
    proxy.app.reload(loadConfigObject({ server: { port: 0 }, log: { level: 'debug' }, upstreams: [{ name: 'openai', baseUrl: `${up.url}/v1`, keys: [{ name: 'k', key: NEW }] }] }, {}).config);
    for (let i = 0; i < 3; i++) await chat();
    expect(up.requests.map((r) => r.headers['authorization'])).toEqual([`Bearer ${OLD}`, `Bearer ${NEW}`, `Bearer ${NEW}`, `Bearer ${NEW}`]);
    for (const s of [OLD, NEW]) expect(proxy.logs.join('\n')).not.toContain(s);
  });
});

describe('guard: usage still counted', () => {
  it('guard: OpenAI JSON and an OpenAI stream whose usage is split across chunks are both counted in /admin/keys', async () => {
    let n = 0;
    const up = await startRawUpstream((req) => {
      n++;
      const s = req.socket;
      if (n === 1) {
        const body = JSON.stringify(completion('gpt-4o', 'json'));
        s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        return;
      }
      const events = 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}\n\ndata: [DONE]\n\n';
      const cut = events.indexOf('prompt_tok') + 6;
      s.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n');
      const chunk = (t: string) => s.write(`${Buffer.byteLength(t).toString(16)}\r\n${t}\r\n`);
      chunk(events.slice(0, cut));
      setTimeout(() => {
        chunk(events.slice(cut));
        s.write('0\r\n\r\n');
      }, 30);
    });
    closers.push(() => up.close());
    const proxy = await startProxy({ upstreamUrl: up.url, keys: [{ name: 'k', key: 'sk-perf-usage-secret-000000000001' }] });
    closers.push(() => proxy.close());
    const post = async (body: string) => (await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).body.text();
    await post('{"model":"gpt-4o"}');
    expect(await adminTokens(proxy.url, 'k')).toEqual({ tokensIn: 3, tokensOut: 2 });
    const text = await post('{"model":"gpt-4o","stream":true}');
    expect(text).toContain('[DONE]');
    await waitFor(async () => (await adminTokens(proxy.url, 'k'))?.tokensIn === 14);
    expect(await adminTokens(proxy.url, 'k')).toEqual({ tokensIn: 14, tokensOut: 9 });
  });

  it('guard: an Anthropic stream (input in message_start, output in message_delta) is counted', async () => {
    const events = [
      'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":25,"output_tokens":1}}}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n',
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}\n\n',
      'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ].join('');
    const up = await startRawUpstream((req) => {
      req.socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${Buffer.byteLength(events)}\r\n\r\n${events}`);
    });
    closers.push(() => up.close());
    const proxy = await startProxy({ upstreamUrl: up.url, keys: [{ name: 'a', key: 'sk-ant-perf-usage-secret-00000001' }], upstream: { provider: 'anthropic', baseUrl: up.url } });
    closers.push(() => proxy.close());
    const r = await request(`${proxy.url}/anthropic/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"claude-x","stream":true,"max_tokens":10}' });
    expect(r.statusCode).toBe(200);
    await r.body.text();
    await waitFor(async () => (await adminTokens(proxy.url, 'a'))?.tokensOut === 15);
    expect(await adminTokens(proxy.url, 'a')).toEqual({ tokensIn: 25, tokensOut: 15 });
  });
});

describe('guard: log level warn', () => {
  it('guard: no request line is written, yet metrics and admin count the request and its usage', async () => {
    const SECRET = 'sk-perf-warn-level-secret-00000001';
    const up = await startFaultUpstream(() => act.afterBody(() => act.json(200, completion('gpt-4o', 'w'))));
    closers.push(() => up.close());
    const { config } = loadConfigObject({ server: { port: 0 }, log: { level: 'warn' }, upstreams: [{ name: 'openai', baseUrl: `${up.url}/v1`, keys: [{ name: 'k', key: SECRET }] }] }, {});
    const logs: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(chunk.toString('utf8'));
        cb();
      },
    });
    const app = await buildApp({ config, logger: createLogger('warn', sink), random: () => 0.5 });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const addr = app.server.address();
    if (addr === null || typeof addr === 'string') throw new Error('no address');
    const url = `http://127.0.0.1:${addr.port}`;
    const r = await request(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"gpt-4o"}' });
    await r.body.text();
    expect(r.statusCode).toBe(200);
    const metrics = await (await request(`${url}/metrics`)).body.text();
    expect(metrics).toMatch(/keypool_requests_total\{[^}]*\} 1\b/);
    expect(await adminTokens(url, 'k')).toEqual({ tokensIn: 3, tokensOut: 2 });
    expect(logs.filter((l) => l.includes('"msg":"request"'))).toEqual([]);
    for (const l of [...logs, metrics]) expect(l).not.toContain(SECRET);
  });
});
