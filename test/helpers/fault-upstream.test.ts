// The fault upstream itself, against undici directly: each action produces the fault it claims (as the
// error undici raises for it), requests are recorded as they arrived, and the request framing holds
// under any split of the bytes.
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { Client } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { RequestReader, type ReadEvent } from './http-request-reader.js';
import { act, BODY_RECORD_LIMIT, closedPortUrl, OVERSIZED_HEADER_BYTES, startFaultUpstream, type FaultAction, type FaultUpstream, type FaultUpstreamOptions, type Script } from './fault-upstream.js';
import { waitFor } from './wait.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function upstream(script: Script, options?: FaultUpstreamOptions): Promise<FaultUpstream> {
  const u = await startFaultUpstream(script, options);
  closers.push(() => u.close());
  return u;
}

function client(url: string, timeouts: { headersTimeout?: number; bodyTimeout?: number } = {}): Client {
  const c = new Client(url, timeouts);
  closers.push(() => c.destroy());
  return c;
}

const always = (a: FaultAction): Script => () => a;
const BODY = '{"model":"gpt-4o-mini","messages":[]}';

interface Outcome {
  status?: number;
  headers?: Record<string, string | string[] | undefined>;
  text: string;
  /** The error undici raised, on the request or while reading the body. */
  error?: { code: string | undefined; name: string; message: string };
  /** The error came after the head (while reading the body). */
  inBody?: boolean;
}

async function send(c: Client, opts: { method?: 'GET' | 'POST'; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Outcome> {
  const out: Outcome = { text: '' };
  try {
    const res = await c.request({
      method: opts.method ?? 'POST',
      path: '/v1/chat/completions',
      headers: { authorization: 'Bearer sk-tool-test-key', 'content-type': 'application/json', ...opts.headers },
      body: opts.method === 'GET' ? undefined : (opts.body ?? BODY),
    });
    out.status = res.statusCode;
    out.headers = res.headers;
    try {
      for await (const chunk of res.body) out.text += String(chunk);
    } catch (err) {
      out.error = errorOf(err);
      out.inBody = true;
    }
  } catch (err) {
    out.error = errorOf(err);
    out.inBody = false;
  }
  return out;
}

function errorOf(err: unknown): Outcome['error'] {
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  return { code: typeof e.code === 'string' ? e.code : undefined, name: String(e.name), message: String(e.message) };
}

describe('recording', () => {
  it('records method, path, headers, credential, body and completeness; keep-alive requests share a connection', async () => {
    const u = await upstream(always(act.json(200, { ok: true })));
    const c = client(u.url);
    expect((await send(c)).status).toBe(200);
    expect((await send(c, { headers: { authorization: 'Bearer sk-other' } })).status).toBe(200);
    expect((await send(c)).status).toBe(200);
    expect(u.requests).toHaveLength(3);
    const [a, b, d] = u.requests;
    expect(a).toMatchObject({ index: 0, keyIndex: 0, method: 'POST', path: '/v1/chat/completions', key: 'sk-tool-test-key', complete: true, bodyBytes: BODY.length });
    expect(a!.headers['authorization']).toBe('Bearer sk-tool-test-key');
    expect(a!.body.toString()).toBe(BODY);
    expect(b).toMatchObject({ index: 1, keyIndex: 0, key: 'sk-other' });
    expect(d).toMatchObject({ index: 2, keyIndex: 1, key: 'sk-tool-test-key' });
    expect(new Set(u.requests.map((r) => r.connection)).size).toBe(1);
    expect(u.copies).toBe(3);
  });

  it('afterBody decides on the whole body; a script that throws resets that connection and is kept for the test', async () => {
    const u = await upstream(() => act.afterBody((r) => (r.body.includes('gpt-x') ? act.json(404, { no: true }) : act.json(200, { ok: true }))));
    expect((await send(client(u.url), { body: '{"model":"gpt-x"}' })).status).toBe(404);
    expect((await send(client(u.url))).status).toBe(200);
    expect(u.requests.map((r) => r.action)).toEqual(['respond', 'respond']);
    u.setScript(() => {
      throw new Error('script bug');
    });
    expect((await send(client(u.url))).error?.code).toBe('ECONNRESET');
    expect(u.scriptErrors).toHaveLength(1);
  });

  it('keeps at most BODY_RECORD_LIMIT bytes of a body but counts all of it', async () => {
    const u = await upstream(always(act.json(200, {})));
    const body = Buffer.alloc(BODY_RECORD_LIMIT + 1024 * 1024, 0x62);
    expect((await send(client(u.url), { body })).status).toBe(200);
    expect(u.requests[0]).toMatchObject({ bodyBytes: body.length, complete: true });
    expect(u.requests[0]!.body.length).toBe(BODY_RECORD_LIMIT);
  });

  it('reads a chunked request body to its end', async () => {
    const u = await upstream(always(act.json(200, {})));
    const c = client(u.url);
    const parts = ['{"model":', '"gpt-4o-mini",', '"messages":[]}'];
    const res = await c.request({
      method: 'POST',
      path: '/v1/chat/completions',
      body: Readable.from(parts.map((p) => Buffer.from(p))),
    });
    await res.body.dump();
    expect(u.requests[0]!.headers['transfer-encoding']).toBe('chunked');
    expect(u.requests[0]!.body.toString()).toBe(parts.join(''));
    expect(u.requests[0]!.complete).toBe(true);
  });

  it('answers 400 and closes on bytes that are no request, and on a head over 64 KiB', async () => {
    const u = await upstream(always(act.json(200, {})));
    for (const bytes of ['NOT HTTP\r\n\r\n', `GET / HTTP/1.1\r\nx: ${'a'.repeat(70 * 1024)}\r\n\r\n`]) {
      const got = await rawExchange(u.url, bytes);
      expect(got).toMatch(/^HTTP\/1\.1 400 /);
    }
    expect(u.requests).toHaveLength(0);
  });

  it('the request framing is the same however the bytes are split (fast-check)', () => {
    const req = fc.record({
      method: fc.constantFrom('GET', 'POST', 'DELETE'),
      body: fc.uint8Array({ maxLength: 300 }),
      chunked: fc.boolean(),
      chunkSize: fc.integer({ min: 1, max: 64 }),
    });
    fc.assert(
      fc.property(fc.array(req, { minLength: 1, maxLength: 4 }), fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 20 }), (reqs, cuts) => {
        const wire = Buffer.concat(reqs.map((r) => encode(r.method, Buffer.from(r.body), r.chunked, r.chunkSize)));
        const whole = summarise(new RequestReader().push(wire));
        const reader = new RequestReader();
        const events: ReadEvent[] = [];
        let at = 0;
        for (let i = 0; at < wire.length; i++) {
          const n = cuts[i % cuts.length]!;
          events.push(...reader.push(wire.subarray(at, at + n)));
          at += n;
        }
        const split = summarise(events);
        expect(split).toEqual(whole);
        expect(whole).toEqual(reqs.map((r) => ({ method: r.method, body: Buffer.from(r.body).toString('hex') })));
      }),
      { numRuns: 300 },
    );
  });
});

describe('actions, as undici sees them', () => {
  it('respond: the status, headers and body given, Content-Length added', async () => {
    const u = await upstream(always(act.respond(429, { 'retry-after': '7', 'x-should-retry': 'false' }, 'slow down')));
    const got = await send(client(u.url));
    expect(got).toMatchObject({ status: 429, text: 'slow down' });
    expect(got.headers).toMatchObject({ 'retry-after': '7', 'x-should-retry': 'false', 'content-length': '9' });
  });

  it('raw: exactly the bytes given', async () => {
    const u = await upstream(always(act.raw('HTTP/1.1 204 No Content\r\nx-raw: yes\r\n\r\n', 'keep')));
    const got = await send(client(u.url));
    expect(got).toMatchObject({ status: 204, text: '' });
    expect(got.headers?.['x-raw']).toBe('yes');
  });

  it('closedPortUrl: ECONNREFUSED', async () => {
    const got = await send(client(await closedPortUrl()));
    expect(got.error?.code).toBe('ECONNREFUSED');
  });

  it('resetConnection: reset on accept, before a byte is read: ECONNRESET and nothing recorded', async () => {
    const u = await upstream(always(act.json(200, {})), { resetConnection: (n) => n === 0 });
    const got = await send(client(u.url));
    expect(got.error?.code).toMatch(/^(ECONNRESET|EPIPE|UND_ERR_SOCKET)$/);
    expect(u.requests).toHaveLength(0);
    expect(u.connections).toBe(1);
  });

  it('resetBeforeBody: ECONNRESET while a large body is still being written; no copy', async () => {
    const u = await upstream(always(act.resetBeforeBody()));
    const body = Buffer.alloc(16 * 1024 * 1024, 0x61);
    const got = await send(client(u.url), { body });
    expect(got.error?.code).toMatch(/^(ECONNRESET|EPIPE)$/);
    expect(u.requests[0]).toMatchObject({ action: 'resetBeforeBody', complete: false });
    expect(u.requests[0]!.bodyBytes).toBeLessThan(body.length);
    expect(u.copies).toBe(0);
  });

  it('resetAfterRequest: the whole request arrives (a copy), then ECONNRESET', async () => {
    const u = await upstream(always(act.resetAfterRequest()));
    const got = await send(client(u.url));
    expect(got).toMatchObject({ error: { code: 'ECONNRESET' }, inBody: false });
    expect(u.copies).toBe(1);
  });

  it('stallBeforeHeaders: UND_ERR_HEADERS_TIMEOUT; close() ends the stalled connection', async () => {
    const u = await upstream(always(act.stallBeforeHeaders()));
    const got = await send(client(u.url, { headersTimeout: 100 }));
    expect(got).toMatchObject({ error: { code: 'UND_ERR_HEADERS_TIMEOUT' }, inBody: false });
    expect(u.copies).toBe(1);
    // A stall whose client stays (and would keep a half-closed socket open) is ended by close().
    const raw = connect({ port: Number(new URL(u.url).port), host: '127.0.0.1', allowHalfOpen: true });
    raw.on('error', () => {});
    raw.write(`POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}`);
    await waitFor(() => u.requests.length === 2);
    const ended = new Promise((r) => raw.once('end', r));
    await u.close();
    await ended;
    raw.destroy();
    expect(u.openSockets).toBe(0);
    expect(u.requests.every((r) => r.socketClosed)).toBe(true);
  });

  it('stream: SSE events, chunked, ending in data: [DONE]', async () => {
    const u = await upstream(always(act.stream(['{"n":1}', '{"n":2}'])));
    const got = await send(client(u.url));
    expect(got.status).toBe(200);
    expect(got.headers).toMatchObject({ 'content-type': 'text/event-stream', 'transfer-encoding': 'chunked' });
    expect(got.error).toBeUndefined();
    expect(got.text).toBe('data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n');
  });

  it('stream endWithoutTerminator: a clean end without [DONE]', async () => {
    const u = await upstream(always(act.stream(['{"n":1}'], { endWithoutTerminator: true })));
    const got = await send(client(u.url));
    expect(got.error).toBeUndefined();
    expect(got.text).toBe('data: {"n":1}\n\n');
  });

  it('stream truncateAfter: the first events, then the socket closes mid-body (UND_ERR_SOCKET)', async () => {
    const u = await upstream(always(act.stream(['{"n":1}', '{"n":2}', '{"n":3}'], { truncateAfter: 2 })));
    const got = await send(client(u.url));
    expect(got).toMatchObject({ status: 200, error: { code: 'UND_ERR_SOCKET' }, inBody: true });
    expect(got.text).toBe('data: {"n":1}\n\ndata: {"n":2}\n\n');
  });

  it('stream stallAfter: the first events, then silence (UND_ERR_BODY_TIMEOUT)', async () => {
    const u = await upstream(always(act.stream(['{"n":1}', '{"n":2}', '{"n":3}'], { stallAfter: 1 })));
    const got = await send(client(u.url, { bodyTimeout: 100 }));
    expect(got).toMatchObject({ status: 200, error: { code: 'UND_ERR_BODY_TIMEOUT' }, inBody: true });
    expect(got.text).toBe('data: {"n":1}\n\n');
  });

  it('garbageStatusLine: HTTPParserError (invalid status code), no head', async () => {
    const u = await upstream(always(act.garbageStatusLine()));
    const got = await send(client(u.url));
    expect(got).toMatchObject({ error: { name: 'HTTPParserError' }, inBody: false });
    expect(got.error?.message).toMatch(/status/i);
    expect(u.copies).toBe(1);
  });

  it('oversizedHeader: UND_ERR_HEADERS_OVERFLOW', async () => {
    const u = await upstream(always(act.oversizedHeader()));
    const got = await send(client(u.url));
    expect(got).toMatchObject({ error: { code: 'UND_ERR_HEADERS_OVERFLOW' }, inBody: false });
    expect(OVERSIZED_HEADER_BYTES).toBeGreaterThan(16 * 1024);
  });

  it('clAndTe: both framing headers are on the wire; undici refuses the answer', async () => {
    const u = await upstream(always(act.clAndTe()));
    const got = await send(client(u.url));
    // undici 7 reports this framing conflict as a length mismatch, before any head is delivered.
    expect(got).toMatchObject({ error: { code: 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' }, inBody: false });
    const wire = await rawExchange(u.url, `GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    expect(wire).toMatch(/\r\ncontent-length: 2\r\n/);
    expect(wire).toMatch(/\r\ntransfer-encoding: chunked\r\n/);
  });

  it('clMismatch: a head promising 1000 bytes, part of a body, then a close (UND_ERR_SOCKET) or a stall', async () => {
    const u = await upstream(always(act.clMismatch('close')));
    const cut = await send(client(u.url));
    expect(cut).toMatchObject({ status: 200, error: { code: 'UND_ERR_SOCKET' }, inBody: true });
    expect(cut.headers?.['content-length']).toBe('1000');
    expect(cut.text.length).toBeLessThan(1000);
    u.setScript(always(act.clMismatch('stall')));
    const stalled = await send(client(u.url, { bodyTimeout: 100 }));
    expect(stalled).toMatchObject({ status: 200, error: { code: 'UND_ERR_BODY_TIMEOUT' }, inBody: true });
  });

  it('HEAD gets a head without a body', async () => {
    const u = await upstream(always(act.respond(200, { 'content-type': 'text/plain' }, 'hello')));
    const res = await client(u.url).request({ method: 'HEAD', path: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe('5');
    expect(await res.body.text()).toBe('');
  });
});

function encode(method: string, body: Buffer, chunked: boolean, chunkSize: number): Buffer {
  const head = `${method} /p HTTP/1.1\r\nhost: x\r\n`;
  if (!chunked) return Buffer.concat([Buffer.from(`${head}content-length: ${body.length}\r\n\r\n`), body]);
  const parts: Buffer[] = [Buffer.from(`${head}transfer-encoding: chunked\r\n\r\n`)];
  for (let i = 0; i < body.length; i += chunkSize) {
    const c = body.subarray(i, i + chunkSize);
    parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

function summarise(events: readonly ReadEvent[]): { method: string; body: string }[] {
  const out: { method: string; body: Buffer[]; ended: boolean }[] = [];
  for (const e of events) {
    if (e.kind === 'error') throw new Error(e.reason);
    if (e.kind === 'head') out.push({ method: e.head.method, body: [], ended: false });
    if (e.kind === 'body') out.at(-1)!.body.push(e.data);
    if (e.kind === 'end') out.at(-1)!.ended = true;
  }
  if (!out.every((r) => r.ended)) throw new Error('a request did not end');
  return out.map((r) => ({ method: r.method, body: Buffer.concat(r.body).toString('hex') }));
}

/** Writes bytes on a fresh connection and collects everything until the server closes it. */
async function rawExchange(url: string, bytes: string): Promise<string> {
  const socket = connect(Number(new URL(url).port), '127.0.0.1');
  socket.on('error', () => {});
  socket.write(bytes);
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await new Promise((r) => socket.once('close', r));
  return got;
}
