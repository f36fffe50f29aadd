// Failure paths: error bodies that are gzipped, truncated or stalled; upstreams that break mid-stream;
// bursts of concurrent 429s; the budget when a request has to wait; HEAD and 204.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

const KEYS = ['sk-fail-key-one-1111', 'sk-fail-key-two-2222'];
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

/** An upstream whose answer per key is a function of the test's. */
async function scriptedUpstream(handler: (key: string, req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(String(req.headers.authorization).replace('Bearer ', ''), req, res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function proxy(upstreamUrl: string, opts: Partial<Parameters<typeof startProxy>[0]> = {}): Promise<TestProxy> {
  const p = await startProxy({ upstreamUrl, keys: KEYS, ...opts });
  closers.push(() => p.close());
  return p;
}

const post = async (p: TestProxy, body = '{"model":"gpt-4o-mini"}') => {
  const res = await request(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
};

describe('error bodies', () => {
  it('reads a gzipped insufficient_quota body: long cooldown, then the next key', async () => {
    const url = await scriptedUpstream((key, _req, res) => {
      if (key === KEYS[0]) {
        res.writeHead(429, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        res.end(gzipSync('{"error":{"type":"insufficient_quota","code":"insufficient_quota","message":"quota"}}'));
      } else {
        res.end('{"ok":true}');
      }
    });
    const p = await proxy(url);
    expect((await post(p)).status).toBe(200);
    expect(p.pool.states()[0]!.creditUntil).toBeGreaterThan(Date.now() + 3_000_000);
  });

  it('a truncated gzip error body does not hang the request', async () => {
    const url = await scriptedUpstream((key, _req, res) => {
      if (key === KEYS[0]) {
        const gz = gzipSync('{"error":{"message":"slow down","code":"rate_limit_exceeded"}}'.repeat(50));
        res.writeHead(429, { 'content-encoding': 'gzip', 'content-length': String(gz.length), 'retry-after': '30' });
        res.write(gz.subarray(0, 20));
        setTimeout(() => res.socket?.destroy(), 10);
      } else {
        res.end('{"ok":true}');
      }
    });
    const p = await proxy(url);
    const res = await post(p);
    expect(res.status).toBe(200);
    expect(res.headers['x-keypool-attempts']).toBe('2');
    expect(p.pool.states().every((s) => s.inflight === 0)).toBe(true);
  });

  it('a stalled error body does not hold up rotation (bounded read)', async () => {
    const url = await scriptedUpstream((key, _req, res) => {
      if (key === KEYS[0]) {
        res.writeHead(429, { 'retry-after': '20', 'content-type': 'application/json' });
        res.flushHeaders(); // ...and never a body byte
      } else {
        res.end('{"ok":true}');
      }
    });
    const p = await proxy(url, { retry: { timeoutMs: 60_000 } });
    const res = await post(p);
    expect(res.status).toBe(200);
    expect(res.headers['x-keypool-key']).toBe('openai-2');
    expect(p.pool.states()[0]!.scopes.get('gpt-4o-mini')!.cooldownUntil).toBeGreaterThan(Date.now() + 15_000);
  });
});

describe('streams that break', () => {
  it('an upstream that dies mid-stream ends that client\'s stream with an error event, logged as 502; other clients are unaffected', async () => {
    const url = await scriptedUpstream((key, req, res) => {
      if (req.url?.includes('broken')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"n":1}\n\n');
        setTimeout(() => res.socket?.destroy(), 20);
      } else {
        res.end(`{"key":"${key === KEYS[0] ? 1 : 2}"}`);
      }
    });
    const p = await proxy(url);
    const broken = request(`${p.url}/v1/broken`).then((r) => r.body.text());
    const fine = await post(p);
    expect(fine.status).toBe(200);
    const text = await broken;
    expect(text.startsWith('data: {"n":1}\n\n')).toBe(true);
    const last = text.trimEnd().split('\n\n').at(-1)!;
    expect(JSON.parse(last.replace(/^data: /, ''))).toMatchObject({ error: { code: 'keypool_stream_interrupted', type: 'server_error' } });
    await new Promise((r) => setTimeout(r, 20));
    expect(p.logs.some((l) => l.includes('"path":"/v1/broken"') && l.includes('"status":502'))).toBe(true);
    expect(p.pool.states().every((s) => s.inflight === 0)).toBe(true);
  });
});

describe('concurrency and budget', () => {
  it('requests in flight when a key is rate-limited all rotate; the burst counts as one 429 streak', async () => {
    const upstream = await startFakeUpstream({ latencyMs: 30 });
    closers.push(() => upstream.close());
    upstream.setDefault(KEYS[0]!, { kind: 'rate_limit', style: 'none' });
    const p = await proxy(upstream.url);
    const results = await Promise.all(Array.from({ length: 8 }, () => post(p)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    const s = p.pool.states()[0]!;
    expect(s.stats.rateLimited).toBeGreaterThanOrEqual(1);
    expect(p.pool.streakOf(s, 'gpt-4o-mini')).toBe(1);
    expect(p.pool.states().every((x) => x.inflight === 0)).toBe(true);
  });

  it('waiting for a cooling key costs a unit: with maxRetries 0 a single cooling key fails at once', async () => {
    const upstream = await startFakeUpstream();
    closers.push(() => upstream.close());
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 1000 });
    const p = await proxy(upstream.url, { keys: [KEYS[0]!], retry: { maxRetries: 0 } });
    const res = await post(p);
    expect(res.status).toBe(429);
    expect(upstream.requests).toHaveLength(1);
    expect(p.room.metrics.deferred).toBe(0);
  });

  it('reads Retry-After as an HTTP date through the proxy', async () => {
    const upstream = await startFakeUpstream();
    closers.push(() => upstream.close());
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after-date', ms: 40_000 });
    const p = await proxy(upstream.url);
    expect((await post(p)).status).toBe(200);
    const until = p.pool.states()[0]!.scopes.get('gpt-4o-mini')!.cooldownUntil;
    expect(until - Date.now()).toBeGreaterThan(35_000);
    expect(until - Date.now()).toBeLessThan(42_000);
  });
});

describe('bodiless answers', () => {
  it('HEAD and 204 pass through', async () => {
    const url = await scriptedUpstream((_key, req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '42' });
        res.end();
      } else {
        res.writeHead(204);
        res.end();
      }
    });
    const p = await proxy(url);
    const head = await request(`${p.url}/v1/models`, { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-length']).toBe('42');
    await head.body.dump();
    const del = await request(`${p.url}/v1/files/x`, { method: 'DELETE' });
    expect(del.statusCode).toBe(204);
    expect(await del.body.text()).toBe('');
  });
});
