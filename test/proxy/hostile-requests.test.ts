// Hostile requests end to end: a real keypool in front of a loopback upstream that records every connection
// and request. Each hostile request gets a clear 4xx, nothing reaches the upstream, the pool key appears in
// no answer or log, and a normal request is served afterwards.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ALLOW_HEADER, MAX_REQUEST_HEADERS } from '../../src/proxy/request-target.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

const POOL_KEY = 'sk-hostile-pool-key-0123456789';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

interface Recorded {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** An upstream that records everything and echoes each request back, as a TRACE-honouring server would. */
async function recordingUpstream(): Promise<{ url: string; requests: Recorded[]; connections: () => number }> {
  const requests: Recorded[] = [];
  let connections = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ echo: { method: req.method, url: req.url, headers: req.headers } }));
    });
  });
  server.on('connection', () => connections++);
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.alloc(0) });
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, connections: () => connections };
}

async function setup() {
  const upstream = await recordingUpstream();
  const proxy = await startProxy({ upstreamUrl: upstream.url, keys: [POOL_KEY] });
  closers.push(() => proxy.close());
  return { upstream, proxy, host: new URL(proxy.url).host };
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  raw: string;
}

/** Writes bytes on a fresh socket and reads until keypool closes it (bounded: a hang fails the test). */
function rawExchange(proxy: TestProxy, bytes: string | Buffer, opts: { resetAfterWrite?: boolean } = {}): Promise<RawAnswer> {
  const { port } = new URL(proxy.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let raw = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within 5 s; got ${JSON.stringify(raw.slice(0, 200))}`));
    }, 5000);
    socket.on('data', (d: Buffer) => (raw += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parse(raw));
    });
    socket.write(bytes, () => {
      if (opts.resetAfterWrite) socket.resetAndDestroy();
    });
  });
}

function parse(raw: string): RawAnswer {
  const end = raw.indexOf('\r\n\r\n');
  const head = end === -1 ? raw : raw.slice(0, end);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const c = l.indexOf(':');
    if (c > 0) headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1] ?? 0), headers, body: end === -1 ? '' : raw.slice(end + 4), raw };
}

const req = (method: string, target: string, host: string, extra = '') => `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`;

/** A normal call afterwards: served, and the only thing the upstream ever saw. */
async function expectStillServing(t: Awaited<ReturnType<typeof setup>>): Promise<void> {
  const res = await request(`${t.proxy.url}/v1/models`, { headers: { authorization: 'Bearer client-token' } });
  const text = await res.body.text();
  expect(res.statusCode).toBe(200);
  expect(text).toContain(POOL_KEY); // the echo proves the key reaches the upstream only on the normal call
  expect(t.upstream.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /v1/models']);
  for (const line of t.proxy.logs) expect(line).not.toContain(POOL_KEY);
}

function expectRefused(t: Awaited<ReturnType<typeof setup>>, a: RawAnswer, status: number, code: string): void {
  expect(a.status, a.raw.slice(0, 300)).toBe(status);
  expect(JSON.parse(a.body)).toMatchObject({ error: { code, type: 'invalid_request_error', param: null } });
  expect(a.raw).not.toContain(POOL_KEY);
  expect(t.upstream.requests).toEqual([]);
  expect(t.upstream.connections()).toBe(0);
}

const DOT_PATHS = [
  '/v1/../admin',
  '/v1/chat/completions/../../..',
  '/v1/./models',
  '/v1/%2e%2e/%2e%2e/etc/passwd',
  '/v1/%2E%2E/admin',
  '/v1/.%2e/admin',
  '/v1/%2e./admin',
  '/v1/chat/%2e%2e%2f%2e%2e%2fadmin',
  '/v1/chat%2F..%2F..%2Fadmin',
  '/v1/chat\\..\\..\\admin',
  '/v1/chat%5c..%5c..%5cadmin',
  '/v1/%252e%252e/admin',
  '/v1/%c0%ae%c0%ae/admin',
  '/v1/%u002e%u002e/admin',
  '/v1/..;/admin',
  '/v1/a%zz/..',
  '/v1/chat/completions/..%00/x',
];

describe('hostile request targets', () => {
  it.each(DOT_PATHS)('POST %s: 400 keypool_invalid_path, nothing forwarded', async (path) => {
    const t = await setup();
    const a = await rawExchange(t.proxy, req('POST', path, t.host, 'content-type: application/json\r\ncontent-length: 2\r\n').replace('\r\n\r\n', '\r\n\r\n{}'));
    expectRefused(t, a, 400, 'keypool_invalid_path');
    await expectStillServing(t);
  });

  it('a path that is fine to forward goes upstream byte for byte (the control case)', async () => {
    const t = await setup();
    const a = await rawExchange(t.proxy, req('GET', '/v1/models/meta-llama%2FLlama-3?x=../%2e%2e', t.host));
    expect(a.status).toBe(200);
    expect(t.upstream.requests.map((r) => r.url)).toEqual(['/v1/models/meta-llama%2FLlama-3?x=../%2e%2e']);
  });

  it.each([
    ['absolute-form naming another host', 'http://evil.example/v1/chat/completions'],
    ['absolute-form with userinfo', 'http://user:pass@evil.example/v1/models'],
    ['asterisk-form', '*'],
  ])('%s: 400, nothing forwarded, no connection anywhere', async (_name, target) => {
    const t = await setup();
    const a = await rawExchange(t.proxy, req(target === '*' ? 'OPTIONS' : 'POST', target, t.host, 'content-length: 0\r\n'));
    expectRefused(t, a, 400, 'keypool_invalid_path');
    await expectStillServing(t);
  });

  it('absolute-form naming keypool itself is mapped to its path on the configured upstream', async () => {
    const t = await setup();
    const a = await rawExchange(t.proxy, req('GET', `http://${t.host}/v1/models?a=1`, t.host));
    expect(a.status).toBe(200);
    expect(t.upstream.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /v1/models?a=1']);
  });

  it('a percent-encoded prefix is not the prefix: no upstream serves it, nothing is forwarded or garbled', async () => {
    const t = await setup();
    // Proxy routes match the target as written (never decoded), so /%76%31 is just an unknown path.
    expectRefused(t, await rawExchange(t.proxy, req('GET', '/%76%31/models', t.host)), 404, 'keypool_route_not_found');
    await expectStillServing(t);
  });
});

describe('hostile methods', () => {
  it.each(['TRACE', 'PROPFIND', 'QUERY', 'MKCOL', 'PURGE'])('%s: 405 with Allow, nothing forwarded (on a proxied route and off it)', async (method) => {
    const t = await setup();
    for (const path of ['/v1/chat/completions', '/nowhere']) {
      const a = await rawExchange(t.proxy, req(method, path, t.host, 'authorization: Bearer client-token\r\n'));
      expectRefused(t, a, 405, 'keypool_method_not_allowed');
      expect(a.headers.allow).toBe(ALLOW_HEADER);
    }
    await expectStillServing(t);
  });

  it('a method token the HTTP parser does not know: 405 on the socket, then closed', async () => {
    const t = await setup();
    const a = await rawExchange(t.proxy, req('FOOBAR', '/v1/models', t.host));
    expectRefused(t, a, 405, 'keypool_method_not_allowed');
    expect(a.headers.allow).toBe(ALLOW_HEADER);
    await expectStillServing(t);
  });

  it('CONNECT: answered 405 and closed, never tunnelled', async () => {
    const t = await setup();
    const upstreamAuthority = new URL(t.upstream.url).host;
    const a = await rawExchange(t.proxy, `CONNECT ${upstreamAuthority} HTTP/1.1\r\nHost: ${upstreamAuthority}\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n`);
    expectRefused(t, a, 405, 'keypool_method_not_allowed');
    expect(a.headers.allow).toBe(ALLOW_HEADER);
    // What followed CONNECT on the socket was not served either.
    expect(a.raw.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    await expectStillServing(t);
  });

  it('CONNECT from a client that resets at once does not take the process down', async () => {
    const t = await setup();
    for (let i = 0; i < 5; i++) await rawExchange(t.proxy, `CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n`, { resetAfterWrite: true });
    expect(t.upstream.requests).toEqual([]);
    await expectStillServing(t);
  });
});

describe('hostile headers', () => {
  it('2,000 header fields (under the size limit): 431, not a silent drop', async () => {
    const t = await setup();
    const fields = Array.from({ length: 2000 }, (_, i) => `h${i % 10}:v\r\n`).join('');
    expect(fields.length).toBeLessThan(16 * 1024);
    const a = await rawExchange(t.proxy, req('GET', '/v1/models', t.host, fields));
    expectRefused(t, a, 431, 'keypool_headers_too_large');
    await expectStillServing(t);
  });

  it(`${MAX_REQUEST_HEADERS} fields pass, one more does not`, async () => {
    const t = await setup();
    // Host and Connection count too.
    const fields = (n: number) => Array.from({ length: n - 2 }, (_, i) => `h${i}:v\r\n`).join('');
    const ok = await rawExchange(t.proxy, req('GET', '/v1/models', t.host, fields(MAX_REQUEST_HEADERS)));
    expect(ok.status).toBe(200);
    const over = await rawExchange(t.proxy, req('GET', '/v1/models', t.host, fields(MAX_REQUEST_HEADERS + 1)));
    expect(over.status).toBe(431);
    expect(t.upstream.requests).toHaveLength(1);
  });

  it.each([
    ['one huge header', `x-big: ${'a'.repeat(20_000)}\r\n`],
    ['a huge request line', ''],
  ])('an oversized header block (%s): a clean 431, then closed', async (name, extra) => {
    const t = await setup();
    const target = name === 'a huge request line' ? `/v1/models?${'q'.repeat(20_000)}` : '/v1/models';
    const a = await rawExchange(t.proxy, req('GET', target, t.host, extra));
    expectRefused(t, a, 431, 'keypool_headers_too_large');
    await expectStillServing(t);
  });

  it('a garbled request: an OpenAI-shaped 400 on the socket', async () => {
    const t = await setup();
    const a = await rawExchange(t.proxy, 'GET /v1/models HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n');
    expectRefused(t, a, 400, 'keypool_invalid_request');
    await expectStillServing(t);
  });
});

describe('hostile bodies', () => {
  it('a 2,000,000-deep JSON body is forwarded as it is (the upstream judges it) and does not stop the proxy', async () => {
    const t = await setup();
    const deep = `{"model":"gpt-4o","x":${'['.repeat(2_000_000)}${']'.repeat(2_000_000)}}`;
    const res = await request(`${t.proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: deep });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    expect(t.upstream.requests[0]?.body.toString()).toBe(deep);
    t.upstream.requests.length = 0;
    await expectStillServing(t);
  });
});
