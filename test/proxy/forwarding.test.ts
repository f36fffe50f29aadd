// Forwarding: byte-exact replay, header rules, body limit, streaming without buffering, cancellation.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

const KEYS = ['sk-fwd-key-one-aaaa', 'sk-fwd-key-two-bbbb'];

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function fake(): Promise<FakeUpstream> {
  const u = await startFakeUpstream();
  closers.push(() => u.close());
  return u;
}
async function proxyFor(upstreamUrl: string, opts: Partial<Parameters<typeof startProxy>[0]> = {}): Promise<TestProxy> {
  const p = await startProxy({ upstreamUrl, keys: KEYS, ...opts });
  closers.push(() => p.close());
  return p;
}

/** A hand-driven upstream: each request waits in `pending` until the test answers it. */
interface Held {
  req: IncomingMessage;
  res: ServerResponse;
  closed: Promise<void>;
}
async function manualUpstream(): Promise<{ url: string; next: () => Promise<Held> }> {
  const queue: Held[] = [];
  const waiters: ((h: Held) => void)[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    const held: Held = { req, res, closed: new Promise((r) => res.once('close', () => r())) };
    const w = waiters.shift();
    if (w) w(held);
    else queue.push(held);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    next: () => {
      const h = queue.shift();
      if (h) return Promise.resolve(h);
      return new Promise<Held>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no upstream request arrived')), 5000);
        waiters.push((x) => {
          clearTimeout(t);
          resolve(x);
        });
      });
    },
  };
}

describe('request forwarding', () => {
  it('replays the body byte for byte on every attempt, with the pool key instead of the client\'s', async () => {
    const u = await fake();
    const p = await proxyFor(u.url);
    u.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 60_000 });
    const body = Buffer.from('{"model":"gpt-4o-mini","temperature":1.10,"n":1e0,"text":"é\\u00e9 ✓","messages":[]}');
    const res = await request(`${p.url}/v1/chat/completions?api-version=2024-01-01&x=%20y`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: 'Bearer client-own-token',
        'x-api-key': 'client-x-api-key',
        'openai-beta': 'assistants=v2',
      },
      body,
    });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(u.requests).toHaveLength(2);
    for (const [i, r] of u.requests.entries()) {
      expect(r.body.equals(body)).toBe(true);
      expect(r.path).toBe('/v1/chat/completions?api-version=2024-01-01&x=%20y');
      expect(r.headers.authorization).toBe(`Bearer ${KEYS[i]}`);
      expect(r.headers['x-api-key']).toBeUndefined();
      expect(r.headers['openai-beta']).toBe('assistants=v2');
      expect(r.headers['content-length']).toBe(String(body.length));
    }
  });

  it('drops headers named in the client\'s Connection header', async () => {
    const u = await fake();
    const p = await proxyFor(u.url);
    // undici will not send a custom Connection header, so use node:http.
    const { request: httpRequest } = await import('node:http');
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${p.url}/v1/models`, { headers: { connection: 'x-secret-hop', 'x-secret-hop': 'no', 'x-kept': 'yes' } }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    expect(u.requests[0]!.headers['x-secret-hop']).toBeUndefined();
    expect(u.requests[0]!.headers['x-kept']).toBe('yes');
  });

  it('forwards bodies without a content-type, and methods without a body', async () => {
    const u = await fake();
    const p = await proxyFor(u.url);
    await (await request(`${p.url}/v1/files/abc`, { method: 'DELETE' })).body.text();
    await (await request(`${p.url}/v1/raw`, { method: 'POST', body: 'plain bytes' })).body.text();
    expect(u.requests.map((r) => [r.method, r.path, r.body.toString()])).toEqual([
      ['DELETE', '/v1/files/abc', ''],
      ['POST', '/v1/raw', 'plain bytes'],
    ]);
  });

  it('can send the key in another header (x-api-key, bare)', async () => {
    const u = await fake();
    const p = await proxyFor(u.url, { upstream: { authHeader: 'x-api-key' } });
    await (await request(`${p.url}/v1/models`, { headers: { authorization: 'Bearer client' } })).body.text();
    expect(u.requests[0]!.headers['x-api-key']).toBe(KEYS[0]);
    expect(u.requests[0]!.headers.authorization).toBeUndefined();
  });

  it('answers 413 for a body over the limit, and the upstream never sees it', async () => {
    const u = await fake();
    const p = await proxyFor(u.url, { server: { bodyLimitBytes: 1024 } });
    const res = await request(`${p.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.alloc(2048, 0x61),
    });
    expect(res.statusCode).toBe(413);
    expect(await res.body.json()).toMatchObject({ error: { code: 'keypool_body_too_large', type: 'invalid_request_error' } });
    expect(u.requests).toHaveLength(0);
  });

  it('strips hop-by-hop response headers and adds x-keypool-*', async () => {
    const m = await manualUpstream();
    const p = await proxyFor(m.url);
    const pending = request(`${p.url}/v1/models`);
    const h = await m.next();
    h.res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive, x-hop', 'x-hop': '1', 'x-ratelimit-remaining-requests': '42' });
    h.res.end('{}');
    const res = await pending;
    await res.body.text();
    expect(res.headers['x-hop']).toBeUndefined();
    expect(res.headers['x-ratelimit-remaining-requests']).toBe('42');
    expect(res.headers['x-keypool-key']).toBe('openai-1');
    expect(res.headers['x-keypool-attempts']).toBe('1');
  });

  it('unknown paths get an OpenAI-shaped 404 and /healthz answers', async () => {
    const u = await fake();
    const p = await proxyFor(u.url);
    const res = await request(`${p.url}/nope`);
    expect(res.statusCode).toBe(404);
    expect(await res.body.json()).toMatchObject({ error: { code: 'keypool_route_not_found' } });
    const health = await request(`${p.url}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.text();
  });
});

describe('streaming', () => {
  it('sends headers at once and each chunk as it arrives, unchanged (no buffering)', async () => {
    const m = await manualUpstream();
    const p = await proxyFor(m.url);
    const res = request(`${p.url}/v1/chat/completions`, { method: 'POST', body: '{"stream":true}' });
    const h = await m.next();
    h.res.writeHead(200, { 'content-type': 'text/event-stream' });
    h.res.flushHeaders();
    // The client sees the response before the upstream has sent a single event.
    const r = await res;
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('text/event-stream');
    const reader = r.body[Symbol.asyncIterator]();
    const events = ['data: {"n":1}\n\n', 'data: {"n":2}\n\n', 'data: [DONE]\n\n'];
    for (const ev of events) {
      h.res.write(ev);
      // The next event is only written after this one has reached the client.
      const got = await reader.next();
      expect(Buffer.from(got.value as Buffer).toString()).toBe(ev);
    }
    h.res.end();
    expect((await reader.next()).done).toBe(true);
  });

  it('rotates before the stream starts: the client gets one clean stream from the second key', async () => {
    const u = await fake();
    const p = await proxyFor(u.url);
    u.script(KEYS[0]!, { kind: 'rate_limit', style: 'x-ratelimit', ms: 20_000 });
    u.script(KEYS[1]!, { kind: 'stream', chunks: 4, gapMs: 5 });
    const res = await request(`${p.url}/v1/chat/completions`, { method: 'POST', body: '{"stream":true}' });
    const text = await res.body.text();
    expect(res.headers['x-keypool-key']).toBe('openai-2');
    expect(res.headers['x-keypool-attempts']).toBe('2');
    const datas = text.split('\n\n').filter((l) => l.startsWith('data: '));
    expect(datas).toHaveLength(5);
    expect(datas.at(-1)).toBe('data: [DONE]');
    expect(text).not.toContain('rate_limit');
  });
});

describe('cancellation', () => {
  it('a client that leaves before the answer cancels the upstream request at once', async () => {
    const m = await manualUpstream();
    const p = await proxyFor(m.url);
    const ac = new AbortController();
    const pending = request(`${p.url}/v1/chat/completions`, { method: 'POST', body: '{}', signal: ac.signal }).catch((e: unknown) => e);
    const h = await m.next();
    ac.abort();
    await pending;
    // Resolves only when keypool closes its upstream connection: that is the cancellation.
    await h.closed;
    await waitFor(() => p.logs.some((l) => l.includes('"status":499')));
    expect(p.pool.states().every((s) => s.inflight === 0)).toBe(true);
  });

  it('a client that leaves mid-stream closes the upstream stream', async () => {
    const m = await manualUpstream();
    const p = await proxyFor(m.url);
    const ac = new AbortController();
    const res = request(`${p.url}/v1/chat/completions`, { method: 'POST', body: '{"stream":true}', signal: ac.signal });
    const h = await m.next();
    h.res.writeHead(200, { 'content-type': 'text/event-stream' });
    h.res.write('data: {"n":1}\n\n');
    const r = await res;
    await r.body[Symbol.asyncIterator]().next();
    ac.abort();
    // Resolves only when keypool closes the upstream stream.
    await h.closed;
    await waitFor(() => p.logs.some((l) => l.includes('"status":499')));
    expect(p.pool.states().every((s) => s.inflight === 0)).toBe(true);
  });

  it('a client that leaves while waiting for a cooling key stops the wait, with no further attempt', async () => {
    const clock = new FakeClock();
    const u = await fake();
    const p = await proxyFor(u.url, { keys: [KEYS[0]!], clock });
    u.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 10_000 });
    const ac = new AbortController();
    const pending = request(`${p.url}/v1/models`, { signal: ac.signal }).catch((e: unknown) => e);
    await waitFor(() => p.room.size === 1);
    ac.abort();
    await pending;
    await waitFor(() => p.room.size === 0);
    clock.advance(20_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(u.requests).toHaveLength(1);
  });
});

