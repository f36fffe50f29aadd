// Attacks on the reliability contract (issue 10) and the lease / shutdown work (issue 11) that break it.
// Every test here FAILS on the code it was written against: each is one finding, named `attack: ...`,
// reproduced end to end against a real keypool on loopback. The integrator fixes src/; the test then passes.
// (Attacks that the code withstood are in holds.test.ts.)
import { gunzipSync, constants as zlibConstants, createGzip } from 'node:zlib';
import { connect } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { request } from 'undici';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { act, startFaultUpstream, type FaultAction } from '../helpers/fault-upstream.js';
import { serve } from '../helpers/serve.js';
import { MemoryHub } from '../../src/state/memory-store.js';
import type { StateStore } from '../../src/state/store.js';
import { EventAligner } from '../../src/proxy/sse.js';
import { chat, errorCode, harness, KEYS, settleHarnesses } from '../helpers/fault-harness.js';
import { startProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';
import { startRawUpstream, writeChunk, writeJson } from './raw-upstream.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  try {
    await settleHarnesses();
  } finally {
    while (closers.length > 0) await closers.pop()!();
  }
});

const OK = act.json(200, { id: 'chatcmpl-ok', object: 'chat.completion', choices: [] });
const modelMissing = (model: string): FaultAction =>
  act.json(404, { error: { message: `The model \`${model}\` does not exist or you do not have access to it.`, type: 'invalid_request_error', param: null, code: 'model_not_found' } });

/** The model field of a recorded JSON body, '' if none. */
function modelOf(body: Buffer): string {
  try {
    return String((JSON.parse(body.toString()) as { model?: unknown }).model ?? '');
  } catch {
    return '';
  }
}

/** Runs `fn` over `items` with at most `n` at a time. */
async function inBatches<T>(items: readonly T[], n: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += n) await Promise.all(items.slice(i, i + n).map(fn));
}

describe('wrong blame', () => {
  it('attack: one GET /v1/models answered 401 missing_scope (a restricted key) disables every key of the pool for 24 h', async () => {
    // OpenAI answers 401 `missing_scope` when a restricted key lacks the scope of an endpoint (e.g.
    // api.model.read for /v1/models, api.responses.write for /v1/responses): it is about the endpoint, not
    // the key, which still serves chat completions. keypool disables the key on any 401, walks the pool
    // and disables every key: one request from any client takes the whole pool down for disabledMs.
    const missingScope = act.json(401, {
      error: {
        message:
          "You have insufficient permissions for this operation. Missing scopes: api.model.read. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
        type: 'invalid_request_error',
        param: null,
        code: 'missing_scope',
      },
    });
    const h = await harness((r) => (r.path.startsWith('/v1/models') ? missingScope : OK));
    const list = await h.call({ method: 'GET', path: '/v1/models' });
    expect(list.status).toBe(401);
    const completion = await h.call();
    expect(h.proxy.pool.states().map((s) => s.disabled), 'keys disabled by an endpoint-scope 401').toEqual([undefined, undefined, undefined]);
    expect(completion.status, 'a chat completion the keys can serve').toBe(200);
  });

  it('attack: past 512 model names per key, a model refusal (404 model_not_found) cools the key for EVERY model', async () => {
    // key-state.ts folds models past MAX_SCOPES (512) into the key-wide scope ''. A client that sends 512
    // made-up model names (each answered 404 model_not_found, as OpenAI does) fills every key's scopes; the
    // next made-up name's 404 then cools scope '' for modelUnavailableMs (1 h): every model on every key.
    const h = await harness(() => act.afterBody((req) => (modelOf(req.body).startsWith('made-up-') ? modelMissing(modelOf(req.body)) : OK)), {
      keys: KEYS.slice(0, 2),
      retry: { maxWaitMs: 0 },
    });
    const names = Array.from({ length: 512 }, (_, i) => `made-up-${i}`);
    await inBatches(names, 16, async (m) => expect((await h.call({ body: chat(m) })).status).toBe(404));
    expect((await h.call({ body: chat('made-up-512') })).status).toBe(404);
    const r = await h.call({ body: chat('gpt-4o-mini') });
    expect(r.status, `gpt-4o-mini after the flood: ${r.text.slice(0, 200)}`).toBe(200);
  }, 60_000);

  it('attack: a 429 on a request whose model keypool cannot read (multipart audio upload) cools every key for every model', async () => {
    // requestInfo reads no model from a multipart body (nor from a JSON body over 4 MiB, nested past 128,
    // or with a non-JSON content type): the demand's model is ''. A 429 on it (whisper-1's own per-model
    // limit) is recorded in scope '' of each key, which blocks chat completions on gpt-4o-mini too.
    const h = await harness((r) => (r.path.includes('/audio/') ? act.json(429, { error: { message: 'Rate limit reached for whisper-1', type: 'requests', param: null, code: 'rate_limit_exceeded' } }, { 'retry-after': '30' }) : OK), {
      retry: { maxWaitMs: 0 },
    });
    const boundary = 'kpboundary';
    const multipart = `--${boundary}\r\ncontent-disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="a.wav"\r\ncontent-type: audio/wav\r\n\r\nRIFF....WAVE\r\n--${boundary}--\r\n`;
    const audio = await request(`${h.proxy.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      body: multipart,
    });
    await audio.body.dump();
    expect(audio.statusCode).toBe(429);
    const r = await h.call({ body: chat('gpt-4o-mini') });
    expect(r.status, `chat after a whisper 429: ${r.text.slice(0, 200)}`).toBe(200);
  });

  it('attack: rate-limit headers of a large (> 4 MiB) vision request are applied to every model of the key', async () => {
    // A chat request with a 5 MB inline image has its model unread (PARSE_LIMIT_BYTES): the answer's
    // x-ratelimit-* for gpt-4o go into scope '' and block gpt-4o-mini on that key until the reset.
    const spent = { 'x-ratelimit-limit-requests': '500', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '30s' };
    const h = await harness(() => act.afterBody((req) => (req.bodyBytes > 4 * 1024 * 1024 ? act.json(200, { id: 'big', choices: [] }, spent) : OK)), {
      keys: KEYS.slice(0, 1),
      retry: { maxWaitMs: 0 },
    });
    const image = 'A'.repeat(5 * 1024 * 1024);
    const big = await h.call({ body: `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,${image}"}}]}]}` });
    expect(big.status).toBe(200);
    const r = await h.call({ body: chat('gpt-4o-mini') });
    expect(r.status, `gpt-4o-mini after gpt-4o's bucket ran out: ${r.text.slice(0, 200)}`).toBe(200);
  });
});

describe('wrong blame: answers about the request read as verdicts on the key', () => {
  it("attack: OpenRouter's request-sized 402 (\"requires more credits, or fewer max_tokens\") from one large request cools every key for an hour", async () => {
    // OpenRouter answers 402 when *this request's* max_tokens costs more than the key can afford; the same
    // key serves smaller requests at once. keypool reads any 402 as out of credit: key-wide, outOfCreditMs
    // (1 h), on each key in turn. One client asking for max_tokens 65536 takes the pool away from everyone.
    const h = await harness(() =>
      act.afterBody((r) => {
        const max = Number((JSON.parse(r.body.toString()) as { max_tokens?: number }).max_tokens ?? 0);
        return max > 10_000
          ? act.json(402, { error: { message: `This request requires more credits, or fewer max_tokens. You requested up to ${max} tokens, but can only afford 3919. To increase, visit https://openrouter.ai/settings/credits and upgrade to a paid account`, code: 402, metadata: { provider_name: null } } })
          : OK;
      }),
      { retry: { maxWaitMs: 0 } },
    );
    const big = await h.call({ body: chat('openai/gpt-4o', ',"max_tokens":65536') });
    expect(big.status).toBe(402);
    const small = await h.call({ body: chat('openai/gpt-4o', ',"max_tokens":100') });
    expect(small.status, `a small request after the large one: ${small.text.slice(0, 160)}`).toBe(200);
  });

  it('attack: a remembered model refusal is replayed to later clients with the first answer\'s per-response headers (set-cookie, x-request-id, openai-organization)', async () => {
    // pool.rememberAnswer keeps the upstream's end-to-end headers with the body and hands them to every
    // request for the model for modelUnavailableMs: another client's cookie and request id, and the
    // organisation of whichever key answered last.
    let n = 0;
    const h = await harness(() =>
      act.json(
        403,
        { error: { message: 'Project `proj_1` does not have access to model `gpt-x`', type: 'invalid_request_error', param: null, code: 'model_not_found' } },
        { 'set-cookie': `__cf_bm=cookie-of-request-${n}; path=/`, 'x-request-id': `req_${n++}`, 'openai-organization': 'org-secret-team' },
      ),
    );
    const first = await h.call({ body: chat('gpt-x') });
    expect(first.status).toBe(403);
    const later = await h.call({ body: chat('gpt-x') });
    expect(later.status).toBe(403);
    expect(h.up.requests.length, 'the later one was answered from memory').toBe(3);
    expect({ cookie: later.headers['set-cookie'], id: later.headers['x-request-id'], org: later.headers['openai-organization'] }).toEqual({ cookie: undefined, id: undefined, org: undefined });
  });
});

describe('secrets', () => {
  const TOKEN = 'kp-client-token-agent-a-0123456789';

  it('attack: a client token sent as x-goog-api-key is accepted by the gate AND forwarded to the upstream', async () => {
    // token.ts reads the client's credential from x-goog-api-key too, but headers.ts drops only
    // authorization, x-api-key and api-key: the client's own token reaches the upstream (a third party).
    const h = await harness(() => OK, { clients: [{ name: 'agent-a', token: TOKEN }] });
    const res = await request(`${h.proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': TOKEN },
      body: chat(),
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    expect(h.up.requests).toHaveLength(1);
    const sent = JSON.stringify(h.up.requests[0]!.headers);
    expect(sent.includes(TOKEN), 'the client token reached the upstream').toBe(false);
  });

  it('attack: a pool key quoted in a 403 model refusal reaches the client unscrubbed (the answer path skips the scrubber)', async () => {
    // The 401 path scrubs the upstream's words (give-up.ts). A 403/404 about a model is handed to the
    // client as the upstream's own answer (rotate.ts answerOf / rememberAnswer), byte for byte: a gateway
    // that quotes the credential in it hands the pool key to the client (and to later clients, remembered).
    const h = await harness((r) =>
      act.json(403, { error: { message: `Project proj_x (key ${r.key}) does not have access to model gpt-x`, type: 'invalid_request_error', param: null, code: 'model_not_found' } }),
    );
    const r = await h.call({ body: chat('gpt-x') });
    // Checked here, by itself: settleHarnesses' own search would report it again.
    h.seen.length = 0;
    expect(r.status).toBe(403);
    expect(h.proxy.logs.some((l) => KEYS.some((k) => l.includes(k))), 'a pool key in the log').toBe(false);
    for (const k of KEYS) expect(r.text.includes(k), `pool key ${k.slice(0, 14)}… in the answer`).toBe(false);
  });
});


describe('stream ends', () => {
  /** One SSE event as its own gzip-flushed piece of one gzip stream (what a compressing upstream sends). */
  function gzipStream(): { piece: (text: string) => Promise<Buffer>; end: () => Promise<Buffer> } {
    const gz = createGzip();
    const out: Buffer[] = [];
    gz.on('data', (c: Buffer) => out.push(c));
    const drain = (): Buffer => Buffer.concat(out.splice(0));
    return {
      piece: (text) =>
        new Promise((resolve) => {
          gz.write(text);
          gz.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve(drain()));
        }),
      // 'end' of the readable side: the gzip trailer has been emitted (the writable side's 'finish' comes before it).
      end: () =>
        new Promise((resolve) => {
          gz.once('end', () => resolve(drain()));
          gz.end();
        }),
    };
  }

  it('attack: a gzip-encoded event stream is held back by the event aligner: the client sees no event while the upstream streams', async () => {
    // sse.ts aligns on blank lines in the bytes as they come; with Content-Encoding: gzip those bytes are
    // compressed, hardly ever hold "\n\n", and everything waits (up to 1 MiB) for the end of the stream.
    let release: () => void = () => {};
    const released = new Promise<void>((r) => (release = r));
    const up = await startRawUpstream((req) => {
      void (async () => {
        const gz = gzipStream();
        req.socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n');
        writeChunk(req.socket, await gz.piece('data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'));
        await released;
        writeChunk(req.socket, await gz.piece('data: [DONE]\n\n'));
        writeChunk(req.socket, await gz.end());
        req.socket.write('0\r\n\r\n');
      })();
    });
    closers.push(() => up.close());
    const proxy = await startProxy({ upstreamUrl: up.url, keys: KEYS });
    closers.push(() => proxy.close());
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' },
      body: chat('gpt-4o-mini', ',"stream":true'),
    });
    const got: Buffer[] = [];
    const reading = (async () => {
      for await (const c of res.body) got.push(c as Buffer);
    })();
    // The first event left the upstream: the client should have it while the upstream holds the rest.
    const arrived = await waitFor(() => got.length > 0, 3_000).then(
      () => true,
      () => false,
    );
    release();
    await reading;
    expect(arrived, 'first event delivered while the stream is open').toBe(true);
    expect(gunzipSync(Buffer.concat(got)).toString()).toContain('[DONE]');
  });

  it('attack: a gzip-encoded event stream cut by the upstream ends with plaintext appended to the gzip body: the client cannot read the error event', async () => {
    const up = await startRawUpstream((req) => {
      void (async () => {
        const gz = gzipStream();
        req.socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n');
        writeChunk(req.socket, await gz.piece('data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'));
        setTimeout(() => req.socket.resetAndDestroy(), 50);
      })();
    });
    closers.push(() => up.close());
    const proxy = await startProxy({ upstreamUrl: up.url, keys: KEYS });
    closers.push(() => proxy.close());
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' },
      body: chat('gpt-4o-mini', ',"stream":true'),
    });
    const chunks: Buffer[] = [];
    let broken = false;
    try {
      for await (const c of res.body) chunks.push(c as Buffer);
    } catch {
      broken = true;
    }
    // Either is honest: a readable final error event, or a connection the client sees broken. A clean end
    // whose body no decompressing reader (fetch, the SDKs) can decode is neither.
    if (broken) return;
    let text: string;
    try {
      text = gunzipSync(Buffer.concat(chunks), { finishFlush: zlibConstants.Z_SYNC_FLUSH }).toString();
    } catch (err) {
      text = `undecodable (${(err as Error).message}): ${Buffer.concat(chunks).toString('latin1').slice(0, 120)}`;
    }
    expect(text, 'the decoded stream ends with keypool_stream_interrupted').toContain('keypool_stream_interrupted');
  });
});

describe('shutdown', () => {
  /** keypool serve (the built CLI) with one key in front of `upstreamUrl`. */
  async function keypool(upstreamUrl: string, graceMs: number) {
    const dir = mkdtempSync(join(tmpdir(), 'kp-attack-'));
    const file = join(dir, 'keypool.yaml');
    writeFileSync(file, `server: { shutdownGraceMs: ${graceMs} }\nupstreams:\n  - name: up\n    baseUrl: ${upstreamUrl}/v1\n    keys: [${KEYS[0]}]\n`);
    const kp = await serve(file);
    closers.push(async () => void kp.child.kill('SIGKILL'));
    return kp;
  }

  /** The answer a client got, or how its connection ended. */
  async function outcome(pending: ReturnType<typeof request>): Promise<{ status: number; headers: Record<string, unknown>; text: string } | { dropped: string }> {
    try {
      const res = await pending;
      return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
    } catch (err) {
      return { dropped: (err as { code?: string }).code ?? String(err) };
    }
  }

  it('attack: SIGTERM cutting a POST the upstream already has leaves the client a dropped connection (or a retryable 503): the SDK sends it again (double billing)', async () => {
    // After the grace period shutdown.ts calls cutAll and then closeAllConnections in the same tick, so the
    // 503 keypool_shutting_down the loop would write never leaves: the client sees its connection close.
    // The openai SDK retries a dropped connection (and a 503 without x-should-retry: false): the POST, which
    // the upstream may be running and billing already, is sent again (to another replica). The contract's
    // rule for this phase (sent, no head) is an answer with x-should-retry: false.
    const up = await startFaultUpstream(() => act.stallBeforeHeaders());
    closers.push(() => up.close());
    const kp = await keypool(up.url, 200);
    const pending = request(`${kp.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat() });
    await waitFor(() => up.copies === 1, 5_000);
    kp.child.kill('SIGTERM');
    const o = await outcome(pending);
    expect(up.copies, 'copies the upstream has').toBe(1);
    expect('dropped' in o ? `connection dropped (${o.dropped})` : o.headers['x-should-retry'], 'a POST the upstream may be running: told not to retry').toBe('false');
  });

  it('attack: SIGTERM cutting a request that waits for a key drops its connection before the 503 keypool_shutting_down is written', async () => {
    const up = await startFaultUpstream(() => act.json(429, { error: { message: 'Rate limit reached', type: 'requests', param: null, code: 'rate_limit_exceeded' } }, { 'retry-after': '10' }));
    closers.push(() => up.close());
    const kp = await keypool(up.url, 200);
    const pending = request(`${kp.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat() });
    await waitFor(() => up.requests.length === 1, 5_000);
    // The 429 cools the only key for 10 s: the request now waits in the room.
    await new Promise((r) => setTimeout(r, 100));
    kp.child.kill('SIGTERM');
    const o = await outcome(pending);
    expect('dropped' in o ? `connection dropped (${o.dropped})` : o.status).toBe(503);
    if (!('dropped' in o)) expect(o.text).toContain('keypool_shutting_down');
  });
});

describe('sockets left open', () => {
  it('attack: with queue.streamKeepAlive, a non-2xx answer to a committed stream is drained forever: its upstream connection stays open and app.close() (shutdown) never finishes', async () => {
    // proxy-handler.ts: once the keep-alive 200 is out, a non-2xx answer is told as an SSE error event and
    // its body `discard()`ed: read to its end with no deadline (the request's timer is cancelled by done()).
    // An upstream that drips that body holds the connection for as long as it likes, and agent.close(),
    // which shutdown awaits after the grace period, waits for it.
    let n = 0;
    const up = await startRawUpstream((req) => {
      if (n++ === 0) {
        writeJson(req.socket, 429, { error: { message: 'Rate limit reached', type: 'requests', param: null, code: 'rate_limit_exceeded' } }, { 'retry-after-ms': '300', 'x-should-retry': 'false' });
        return;
      }
      req.socket.write('HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
      const drip = setInterval(() => (req.socket.destroyed ? clearInterval(drip) : writeChunk(req.socket, ' ')), 50);
      req.socket.on('close', () => clearInterval(drip));
    });
    closers.push(() => up.close());
    const proxy = await startProxy({ upstreamUrl: up.url, keys: KEYS.slice(0, 1), queue: { streamKeepAlive: true, keepAliveIntervalMs: 1_000 }, retry: { backoffBaseMs: 1, backoffMaxMs: 2 } });
    let closed = false;
    closers.push(async () => {
      await up.close();
      if (!closed) await proxy.close();
    });
    const first = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat() });
    await first.body.dump();
    expect(first.statusCode).toBe(429);
    const second = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat('gpt-4o-mini', ',"stream":true') });
    const text = await second.body.text();
    expect(text).toContain('event: error');
    expect(proxy.pool.states()[0]!.inflight).toBe(0);
    const closing = proxy.close().then(() => (closed = true));
    const done = await Promise.race([closing.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open after 3 s'), 3_000))]);
    // The upstream hears its sockets close a moment after keypool closes them.
    await waitFor(() => up.openSockets === 0, 1_000).catch(() => undefined);
    expect({ app: done, upstreamSockets: up.openSockets }).toEqual({ app: 'closed', upstreamSockets: 0 });
  });
});

describe('hostile requests', () => {
  it('attack: clients[].maxConcurrent does not bound bodies being buffered: a client at its limit still makes keypool read (and hold) whole bodies', async () => {
    // The gate's admission runs after readBody: a client at maxConcurrent can open any number of uploads
    // of up to bodyLimitBytes (50 MiB) each, trickle them, and keypool buffers every one before refusing
    // it: memory grows with connections x bodyLimitBytes, whatever the client's limit says.
    const TOKEN = 'kp-client-token-slow-0123456789ab';
    const h = await harness(() => act.stallBeforeHeaders(), { clients: [{ name: 'slow', token: TOKEN, maxConcurrent: 1 }], retry: { headersTimeoutMs: 10_000 } });
    const held = request(`${h.proxy.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: chat() }).catch(() => undefined);
    await waitFor(() => h.up.copies === 1, 3_000);
    const { port } = new URL(h.proxy.url);
    const sock = connect(Number(port), '127.0.0.1');
    closers.push(async () => void sock.destroy());
    let answer = '';
    sock.on('data', (d: Buffer) => (answer += d.toString()));
    sock.on('error', () => {});
    await new Promise<void>((r) => sock.once('connect', () => r()));
    // 10 MiB announced, 10 bytes sent: the client is already at its limit, nothing of this can be served.
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${TOKEN}\r\ncontent-type: application/json\r\ncontent-length: ${10 * 1024 * 1024}\r\n\r\n{"model":"`);
    const refused = await waitFor(() => answer.includes('keypool_client_limit'), 2_000).then(
      () => true,
      () => false,
    );
    sock.destroy();
    h.up.setScript(() => OK);
    // Let the held request go: the harness checks the pool is at rest afterwards.
    for (const r of h.up.requests) if (!r.socketClosed) h.proxy.app.proxy.cutAll('test over');
    await held;
    expect(refused, 'refused (429 keypool_client_limit) before its body is read').toBe(true);
  });
});

describe('client leaves', () => {
  it('attack: with a shared store, a client that leaves while its key is being confirmed still has its request sent (and its key held until the head)', async () => {
    // rotate.ts checks the abort signal at the top of each pass, then awaits `pool.confirm` (a Redis round
    // trip near a limit), then sends: the abort that came meanwhile cancelled the previous attempt (or
    // none), not the one sent after. The upstream runs (and bills) a request nobody waits for.
    const hub = new MemoryHub();
    const base = hub.client();
    let takes = 0;
    let open: () => void = () => {};
    const gate = new Promise<void>((r) => (open = r));
    const store: StateStore = {
      ...base,
      take(req) {
        takes++;
        const t = base.take(req);
        return { answer: gate.then(() => t.answer), release: (o) => t.release(o) };
      },
    };
    const h = await harness(() => OK, { keys: [{ key: KEYS[0]!, maxConcurrent: 5 }], store });
    const ctl = new AbortController();
    const pending = request(`${h.proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat(), signal: ctl.signal }).catch(() => undefined);
    await waitFor(() => takes === 1, 3_000);
    ctl.abort();
    await pending;
    // Let keypool see the close (its 'close' handler aborts the request) before the store answers.
    await new Promise((r) => setTimeout(r, 200));
    open();
    await new Promise((r) => setTimeout(r, 300));
    expect(h.up.requests.length, 'requests sent for a client that had left').toBe(0);
  });
});

describe('stream ends: the error event', () => {
  it("attack: an upstream's own SSE error event followed by a cut: the client gets two error events", async () => {
    // sse.ts knows where events end but not what they say: after the upstream's own `data: {"error":...}`
    // a cut adds keypool_stream_interrupted, so the stream carries two final errors (a client that logs or
    // counts error events sees the failure twice; the second one blames the wrong party).
    const HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n';
    const up = await startRawUpstream((req) => {
      req.socket.write(HEAD);
      writeChunk(req.socket, 'data: {"n":1}\n\n');
      writeChunk(req.socket, 'data: {"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}\n\n');
      setTimeout(() => req.socket.resetAndDestroy(), 50);
    });
    closers.push(() => up.close());
    const proxy = await startProxy({ upstreamUrl: up.url, keys: KEYS.slice(0, 1) });
    closers.push(() => proxy.close());
    const res = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat('m', ',"stream":true') });
    const errors = (await res.body.text()).split('\n\n').filter((e) => e.includes('"error"'));
    expect(errors, 'final error events').toHaveLength(1);
  });
});

describe('event-loop work', () => {
  it('attack: one large SSE event (an image partial, a long tool call) arriving in socket-sized chunks costs the aligner quadratic work', () => {
    // EventAligner.push concatenates everything it holds with each new chunk and scans it all again for a
    // blank line: an event of S bytes in chunks of c costs ~S^2/c. Measured on this machine (dist build):
    // a 1 MiB event in 16 KiB chunks blocked the event loop ~200 ms, in 4 KiB chunks ~400 ms, a 900 KiB
    // event in 1 KiB chunks ~1 s, for every client of the process. (OpenAI's image streaming sends
    // partial_image events of 1-2 MB of base64.) Counted here as bytes copied, not time.
    const size = 1024 * 1024;
    const chunk = 16 * 1024;
    const event = Buffer.from(`data: ${'x'.repeat(size - 8)}\n\n`);
    let copied = 0;
    const concat = Buffer.concat.bind(Buffer);
    const spy = vi.spyOn(Buffer, 'concat').mockImplementation((list: readonly Uint8Array[], total?: number) => {
      const out = concat(list, total);
      copied += out.length;
      return out;
    });
    try {
      const a = new EventAligner();
      let out = 0;
      for (let i = 0; i < event.length; i += chunk) out += a.push(event.subarray(i, i + chunk)).length;
      expect(out).toBe(event.length);
    } finally {
      spy.mockRestore();
    }
    expect(copied / event.length, 'bytes copied per byte of the event').toBeLessThanOrEqual(4);
  });
});

describe('hostile requests: what reaches the upstream', () => {
  it('attack: X-HTTP-Method-Override: TRACE (and its kin) are forwarded with the pool key: the method rule is bypassed at any upstream or framework that honours them', async () => {
    // request-target.ts forwards seven methods and answers 405 to TRACE, so an echoing upstream cannot hand
    // the key back. Google's front ends, Rails/Express method-override and many gateways take the method
    // from these headers on a POST: the same TRACE, with the pool key, one header away.
    const h = await harness(() => OK);
    for (const name of ['x-http-method-override', 'x-http-method', 'x-method-override']) {
      const res = await request(`${h.proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', [name]: 'TRACE' }, body: chat() });
      await res.body.dump();
    }
    const forwarded = h.up.requests.flatMap((r) => Object.keys(r.headers).filter((n) => /method/.test(n)));
    expect(forwarded, 'method-override headers that reached the upstream').toEqual([]);
  });

  it('attack: a chunked body over server.bodyLimitBytes is read to its end before the 413: a client can hold the connection by never ending it', async () => {
    // readBody stops keeping chunks past the limit but keeps reading until the body ends; a chunked upload
    // that never ends holds its connection (and keypool's attention) until node's requestTimeout (300 s).
    const h = await harness(() => OK, { server: { bodyLimitBytes: 1024 } });
    const sock = connect(Number(new URL(h.proxy.url).port), '127.0.0.1');
    closers.push(async () => void sock.destroy());
    let answer = '';
    sock.on('data', (d: Buffer) => (answer += d.toString()));
    sock.on('error', () => {});
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
    sock.write(`800\r\n${'a'.repeat(0x800)}\r\n`);
    const refused = await waitFor(() => answer.includes('413'), 2_000).then(
      () => true,
      () => false,
    );
    sock.destroy();
    expect(h.up.requests).toHaveLength(0);
    expect(refused, '413 once the body is past the limit').toBe(true);
  });
});

describe('Retry-After given to clients', () => {
  it('attack: a full room answers a small request 429 keypool_queue_full with retry-after-ms: 1 while a free key has room for it', async () => {
    // The room is full (queue.maxSize 1) with a large request of the model waiting for its token bucket;
    // a small request of that model may not overtake it, so it is refused, and queueFull() computes the
    // wait from nextAvailableAt for the small demand, which the key can take now: retry-after-ms: 1. The
    // openai SDK comes straight back (three 429s in a few ms); the contract: never a 1 ms placeholder.
    const tokens = { 'x-ratelimit-limit-tokens': '10000', 'x-ratelimit-remaining-tokens': '1000', 'x-ratelimit-reset-tokens': '30s' };
    const h = await harness(() => act.json(200, { id: 'ok', choices: [] }, tokens), { keys: KEYS.slice(0, 1), queue: { maxSize: 1 }, retry: { maxWaitMs: 60_000 } });
    expect((await h.call({ body: chat('gpt-4o', ',"max_tokens":10') })).status).toBe(200);
    const ctl = new AbortController();
    const big = request(`${h.proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat('gpt-4o', ',"max_tokens":5000'), signal: ctl.signal }).catch(() => undefined);
    await waitFor(() => h.proxy.room.size === 1, 3_000);
    const small = await h.call({ body: chat('gpt-4o', ',"max_tokens":10') });
    ctl.abort();
    await big;
    // Serving it (the key has room) would be a fix too; refusing it, the wait told must be a real one.
    if (small.status === 200) return;
    expect(errorCode(small)).toBe('keypool_queue_full');
    // Not a placeholder: at least the 1 s keypool says when only an event (a waiter served) frees room.
    expect(Number(small.headers['retry-after-ms']), 'retry-after-ms of a full room').toBeGreaterThanOrEqual(1_000);
  });
});
