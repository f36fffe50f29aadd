// keypool in front of the fault upstream: each fault of the reliability contract (issue 10), checked for
// (a) what the client receives and (b) how many copies of the request reached the upstream; afterEach
// checks (c) the pool is at rest (no key in flight, nobody waiting) and (d) no pool key was shown or logged.
import { afterEach, describe, expect, it } from 'vitest';
import { act, closedPortUrl, type FaultAction, type RecordedRequest, type Script } from '../helpers/fault-upstream.js';
import { chat, errorCode, harness, KEYS, MAX_RETRIES, settleHarnesses, sseData, type Reply } from '../helpers/fault-harness.js';
import type { TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

afterEach(settleHarnesses);
/** A contract test that hangs (an old loop waiting for a silent upstream) fails fast instead of at 20 s. */
const BOUNDED = { timeout: 5_000 };

/** A per-attempt timeout short enough for a test, long enough for a loopback answer under load. */
const SHORT = 150;
const streamChat = (): string => chat('gpt-4o-mini', ',"stream":true');

const OK = act.json(200, { id: 'chatcmpl-ok', object: 'chat.completion', choices: [] });
const EVENTS = ['{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}', '{"id":"c","choices":[{"index":0,"delta":{"content":"lo"}}]}', '{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'];
/** The first attempt gets `first`; every later one `then`. */
const firstThen = (first: FaultAction, then: FaultAction = OK): Script => (_r, i) => (i === 0 ? first : then);
const byKey = (actions: readonly FaultAction[]): Script => (r) => actions[KEYS.indexOf(r.key ?? '')] ?? OK;

function expectStreamInterrupted(r: Reply, eventsBefore: number): void {
  expect(r.status).toBe(200);
  const data = sseData(r.text);
  expect(data.slice(0, eventsBefore)).toEqual(EVENTS.slice(0, eventsBefore));
  expect(data).toHaveLength(eventsBefore + 1);
  expect(data).not.toContain('[DONE]');
  const last = JSON.parse(data.at(-1)!) as { error?: Record<string, unknown> };
  expect(last.error).toMatchObject({ type: 'server_error', param: null, code: 'keypool_stream_interrupted' });
  expect(typeof last.error?.message).toBe('string');
}

/** No key was blamed: none disabled, out of credit or cooling. */
function expectNoKeyBlamed(p: TestProxy): void {
  const now = Date.now();
  for (const s of p.pool.states()) {
    expect(s.disabled, s.key.name).toBeUndefined();
    expect(s.creditUntil, s.key.name).toBeLessThanOrEqual(now);
    for (const scope of s.scopes.values()) expect(scope.cooldownUntil, s.key.name).toBeLessThanOrEqual(now);
  }
}

const distinctKeys = (rs: readonly RecordedRequest[]): number => new Set(rs.map((r) => r.key)).size;

describe('connect phase', BOUNDED, () => {
  it('connection refused: every further attempt is charged; 502 unreachable with x-should-retry: false; no key blamed', async () => {
    const h = await harness(() => OK, { upstreamUrl: await closedPortUrl() });
    const r = await h.call();
    expect(r.status).toBe(502);
    expect(errorCode(r)).toBe('keypool_upstream_unreachable');
    expect(r.headers['x-should-retry']).toBe('false');
    // The first attempt is the free walk's; each later one costs a unit: 1 + maxRetries.
    expect(r.headers['x-keypool-attempts']).toBe(String(1 + MAX_RETRIES));
    expectNoKeyBlamed(h.proxy);
  });
});

describe('writing phase', BOUNDED, () => {
  it('reset while the request body is still being written (16 MiB POST): retried on another key, one copy', async () => {
    // 16 MiB cannot sit in loopback socket buffers, so the reset really lands while keypool is writing.
    const body = chat('gpt-4o-mini', `,"pad":"${'a'.repeat(16 * 1024 * 1024)}"`);
    const h = await harness(firstThen(act.resetBeforeBody()));
    const r = await h.call({ body });
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-attempts']).toBe('2');
    expect(h.up.requests[0]!.complete).toBe(false);
    expect(h.up.copies).toBe(1);
    expect(distinctKeys(h.up.requests)).toBe(2);
    expectNoKeyBlamed(h.proxy);
  });
});

describe('sent phase: the upstream may have the whole request, no head yet', BOUNDED, () => {
  const faults: [string, () => FaultAction][] = [
    ['reset after the request was read', act.resetAfterRequest],
    ['garbage status line', act.garbageStatusLine],
    ['oversized response header (64 KiB)', act.oversizedHeader],
    ['Content-Length and Transfer-Encoding together', act.clAndTe],
  ];
  for (const [name, fault] of faults) {
    describe(name, () => {
      it('POST is not sent again: 502 keypool_upstream_may_have_processed, x-should-retry: false, one copy', async () => {
        const h = await harness(firstThen(fault()));
        const r = await h.call();
        expect(r.status).toBe(502);
        expect(errorCode(r)).toBe('keypool_upstream_may_have_processed');
        expect(r.headers['x-should-retry']).toBe('false');
        expect(r.headers['x-keypool-attempts']).toBe('1');
        expect(h.up.requests).toHaveLength(1);
        expect(h.up.copies).toBe(1);
        expectNoKeyBlamed(h.proxy);
      });

      it('GET is retried (charged): the next attempt serves, two copies', async () => {
        const h = await harness(firstThen(fault(), act.json(200, { object: 'list', data: [] })));
        const r = await h.call({ method: 'GET', path: '/v1/models' });
        expect(r.status).toBe(200);
        expect(r.headers['x-keypool-attempts']).toBe('2');
        expect(h.up.copies).toBe(2);
        expectNoKeyBlamed(h.proxy);
      });

      it('POST with retry.replayAfterSend: true is re-sent: the next attempt serves, two copies', async () => {
        const h = await harness(firstThen(fault()), { retry: { replayAfterSend: true } });
        const r = await h.call();
        expect(r.status).toBe(200);
        expect(r.headers['x-keypool-attempts']).toBe('2');
        expect(h.up.copies).toBe(2);
      });
    });
  }

  it('a GET reset on every attempt: 1 + maxRetries copies, then 502 with x-should-retry: false', async () => {
    const h = await harness(() => act.resetAfterRequest());
    const r = await h.call({ method: 'GET', path: '/v1/models' });
    expect(r.status).toBe(502);
    // The contract names no code for this; either server-fault code is a fair reading.
    expect(['keypool_upstream_unreachable', 'keypool_upstream_error']).toContain(errorCode(r));
    expect(r.headers['x-should-retry']).toBe('false');
    expect(h.up.copies).toBe(1 + MAX_RETRIES);
  });
});

describe('no head in time', BOUNDED, () => {
  it('non-streaming POST: past retry.headersTimeoutMs the attempt is closed and NOT sent again (it may be generating): 504, x-should-retry: false, one copy', async () => {
    const h = await harness(firstThen(act.stallBeforeHeaders()), { retry: { headersTimeoutMs: SHORT, streamHeadersTimeoutMs: 60_000 } });
    const r = await h.call();
    expect(r.status).toBe(504);
    expect(errorCode(r)).toBe('keypool_upstream_timeout');
    expect(r.headers['x-should-retry']).toBe('false');
    expect(h.up.copies).toBe(1);
    await waitFor(() => h.up.requests[0]!.socketClosed, 2_000);
    expectNoKeyBlamed(h.proxy);
  });

  it('non-streaming POST with retry.replayAfterSend, or an idempotent GET: fails over past retry.headersTimeoutMs (two copies)', async () => {
    const h = await harness(firstThen(act.stallBeforeHeaders()), { retry: { headersTimeoutMs: SHORT, replayAfterSend: true } });
    const r = await h.call();
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-attempts']).toBe('2');
    expect(h.up.copies).toBe(2);
    const g = await harness(firstThen(act.stallBeforeHeaders()), { retry: { headersTimeoutMs: SHORT } });
    const got = await g.call({ method: 'GET', path: '/v1/models' });
    expect(got.status).toBe(200);
    expect(got.headers['x-keypool-attempts']).toBe('2');
  });

  it('streaming: past retry.streamHeadersTimeoutMs the attempt is closed and the request fails over', async () => {
    const h = await harness(firstThen(act.stallBeforeHeaders(), act.stream(EVENTS)), { retry: { headersTimeoutMs: 60_000, streamHeadersTimeoutMs: SHORT } });
    const r = await h.call({ body: streamChat() });
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-attempts']).toBe('2');
    expect(sseData(r.text)).toEqual([...EVENTS, '[DONE]']);
    expect(h.up.copies).toBe(2);
    await waitFor(() => h.up.requests[0]!.socketClosed, 2_000);
  });

  it('every attempt of a stream silent: 504 keypool_upstream_timeout with x-should-retry: false after 1 + maxRetries attempts', async () => {
    const h = await harness(() => act.stallBeforeHeaders(), { retry: { maxRetries: 1, streamHeadersTimeoutMs: SHORT } });
    const r = await h.call({ body: streamChat() });
    expect(r.status).toBe(504);
    expect(errorCode(r)).toBe('keypool_upstream_timeout');
    expect(r.headers['x-should-retry']).toBe('false');
    expect(r.headers['x-keypool-attempts']).toBe('2');
    expect(h.up.copies).toBe(2);
    await waitFor(() => h.up.requests.every((q) => q.socketClosed), 2_000);
  });
});

describe('after the head: nothing can be retried', BOUNDED, () => {
  it('a stream that stalls past retry.idleTimeoutMs ends with a keypool_stream_interrupted event; one copy', async () => {
    const h = await harness(() => act.stream(EVENTS, { stallAfter: 2 }), { retry: { idleTimeoutMs: SHORT } });
    const r = await h.call({ body: streamChat() });
    expectStreamInterrupted(r, 2);
    expect(h.up.copies).toBe(1);
    await waitFor(() => h.up.requests[0]!.socketClosed, 2_000);
  });

  it('a stream the upstream cuts (truncated SSE) ends with a keypool_stream_interrupted event; one copy', async () => {
    const h = await harness(() => act.stream(EVENTS, { truncateAfter: 2 }));
    const r = await h.call({ body: streamChat() });
    expectStreamInterrupted(r, 2);
    expect(h.up.copies).toBe(1);
  });

  it('a stream that ends cleanly without [DONE] is delivered as it is (no error event added)', async () => {
    // Reading: a clean end of the chunked body is a complete HTTP answer; keypool cannot know the provider
    // meant to send more (Anthropic's streams have no [DONE]), so it adds nothing.
    const h = await harness(() => act.stream(EVENTS, { endWithoutTerminator: true }));
    const r = await h.call({ body: streamChat() });
    expect(r.bodyError).toBeUndefined();
    expect(sseData(r.text)).toEqual(EVENTS);
  });

  it('a JSON body cut short (Content-Length larger than the body, then close): the client sees a truncated body', async () => {
    const h = await harness(() => act.clMismatch('close'));
    const r = await h.call();
    expect(r.status).toBe(200);
    expect(r.bodyError).toBeDefined();
    expect(r.text.length).toBeLessThan(1000);
    expect(h.up.copies).toBe(1);
  });

  it('a JSON body that stalls past retry.idleTimeoutMs: the connection is destroyed', async () => {
    const h = await harness(() => act.clMismatch('stall'), { retry: { idleTimeoutMs: SHORT } });
    const r = await h.call();
    expect(r.status).toBe(200);
    expect(r.bodyError).toBeDefined();
    expect(h.up.copies).toBe(1);
    await waitFor(() => h.up.requests[0]!.socketClosed, 2_000);
  });
});

describe('x-should-retry from the upstream', BOUNDED, () => {
  it('false on a 500: delivered as it is, not retried', async () => {
    const h = await harness(() => act.json(500, { error: { message: 'boom', type: 'server_error', code: null } }, { 'x-should-retry': 'false' }));
    const r = await h.call();
    expect(r.status).toBe(500);
    expect(JSON.parse(r.text)).toMatchObject({ error: { message: 'boom' } });
    expect(r.headers['x-should-retry']).toBe('false');
    expect(h.up.copies).toBe(1);
  });

  it('true on a 400: retried (the next attempt serves)', async () => {
    const h = await harness(firstThen(act.json(400, { error: { message: 'try again', code: null } }, { 'x-should-retry': 'true' })));
    const r = await h.call();
    expect(r.status).toBe(200);
    expect(h.up.copies).toBe(2);
  });

  it('a 500 on every attempt (no header): 1 + maxRetries copies, keypool_upstream_error with x-should-retry: false', async () => {
    const h = await harness(() => act.json(500, { error: { message: 'boom', code: null } }));
    const r = await h.call();
    expect(r.status).toBe(500);
    expect(errorCode(r)).toBe('keypool_upstream_error');
    expect(r.headers['x-should-retry']).toBe('false');
    expect(h.up.copies).toBe(1 + MAX_RETRIES);
    expectNoKeyBlamed(h.proxy);
  });
});

const modelNotFound = (i: number): FaultAction =>
  act.json(403, { error: { message: `Project \`proj_${i}\` does not have access to model \`gpt-x\``, type: 'invalid_request_error', param: null, code: 'model_not_found' } });
const modelMissing404 = act.json(404, { error: { message: 'The model `gpt-x` does not exist or you do not have access to it.', type: 'invalid_request_error', param: null, code: 'model_not_found' } });

describe('403/404 about a model', BOUNDED, () => {
  it('on some keys: another key serves, free; no key disabled, and the refusing key still serves other models', async () => {
    const h = await harness(() =>
      act.afterBody((r) => {
        const model = (JSON.parse(r.body.toString()) as { model: string }).model;
        if (model === 'gpt-x' && r.key === KEYS[0]) return modelNotFound(0);
        if (model === 'gpt-x' && r.key === KEYS[1]) return modelMissing404;
        return OK;
      }),
    );
    const r = await h.call({ body: chat('gpt-x') });
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-attempts']).toBe('3');
    expect(h.up.requests.map((q) => q.key)).toEqual(KEYS);
    expect(h.proxy.pool.states().map((s) => s.disabled)).toEqual([undefined, undefined, undefined]);
    const served = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const other = await h.call({ body: chat('gpt-4o-mini') });
      expect(other.status).toBe(200);
      served.add(String(other.headers['x-keypool-key']));
    }
    expect(served.size).toBe(3);
  });

  it('on every key: the client gets the last upstream 403 as it is, no key disabled; the next request gets it without walking the pool', async () => {
    const h = await harness(() => act.afterBody((r) => (r.body.includes('gpt-x') ? modelNotFound(KEYS.indexOf(r.key ?? '')) : OK)));
    const r = await h.call({ body: chat('gpt-x') });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.text)).toMatchObject({ error: { code: 'model_not_found', message: expect.stringContaining('proj_2') as unknown } });
    expect(h.up.copies).toBe(3);
    expect(h.proxy.pool.usable).toBe(3);
    const again = await h.call({ body: chat('gpt-x') });
    expect(again.status).toBe(403);
    expect(JSON.parse(again.text)).toMatchObject({ error: { code: 'model_not_found' } });
    expect(h.up.copies).toBe(3);
    expect((await h.call({ body: chat('gpt-4o-mini') })).status).toBe(200);
  });
});

describe('401 and 403 that blame the key', BOUNDED, () => {
  const unauthorized = act.json(401, { error: { message: `Incorrect API key provided: ${KEYS[0]}.`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
  const deactivated = act.json(403, { error: { message: 'Your account has been deactivated. Please contact support.', type: 'invalid_request_error', param: null, code: 'account_deactivated' } });

  for (const [name, answer] of [['401 invalid key (echoing the key)', unauthorized], ['403 account deactivated', deactivated]] as const) {
    it(`${name}: that key is disabled, the others serve`, async () => {
      const h = await harness(byKey([answer]));
      const r = await h.call();
      expect(r.status).toBe(200);
      expect(r.headers['x-keypool-attempts']).toBe('2');
      expect(h.proxy.pool.states().map((s) => s.disabled !== undefined)).toEqual([true, false, false]);
    });
  }

  it('every key 401: 503 keypool_no_usable_keys with x-should-retry: false, one copy per key', async () => {
    const h = await harness(() => unauthorized);
    const r = await h.call();
    expect(r.status).toBe(503);
    expect(errorCode(r)).toBe('keypool_no_usable_keys');
    expect(r.headers['x-should-retry']).toBe('false');
    expect(h.up.copies).toBe(3);
  });

  it('any other 403 (a WAF page) gets one second opinion from another key, then is delivered unchanged, blaming no key', async () => {
    const h = await harness(() => act.respond(403, { 'content-type': 'text/html' }, '<html>Forbidden</html>'));
    const r = await h.call();
    expect(r.status).toBe(403);
    expect(r.text).toBe('<html>Forbidden</html>');
    expect(r.headers['content-type']).toBe('text/html');
    // Not the whole pool: a second key saying the same makes it the request's.
    expect(h.up.copies).toBe(2);
    expect(distinctKeys(h.up.requests)).toBe(2);
    expectNoKeyBlamed(h.proxy);
  });
});
