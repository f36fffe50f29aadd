// Attacks on the reliability contract (issue 10) and the lease / shutdown work (issue 11) that the code
// withstood. Each test tries to break one rule end to end (real loopback servers, raw sockets where the
// HTTP library would get in the way) and passes because the rule held. Findings are in findings.test.ts.
import fc from 'fast-check';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { act, startFaultUpstream, type FaultAction, type FaultUpstream } from '../helpers/fault-upstream.js';
import { chat, KEYS, settleHarnesses } from '../helpers/fault-harness.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';
import { startRawUpstream, writeJson } from './raw-upstream.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  try {
    await settleHarnesses();
  } finally {
    while (closers.length > 0) await closers.pop()!();
  }
});

const OK = act.json(200, { id: 'chatcmpl-ok', object: 'chat.completion', choices: [] });
const EVENTS = ['{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}', '{"id":"c","choices":[{"index":0,"delta":{"content":"lo"}}]}', '{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'];
const RATE_LIMITED = { error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' } };

/** The pool, the room, the request set and every probe at rest: nothing held by anyone. */
function atRest(p: TestProxy): { inflight: number[]; room: number; active: number; probes: string[] } {
  const probes: string[] = [];
  for (const s of p.pool.states()) for (const [m, sc] of s.scopes) if (sc.probeUntil !== 0) probes.push(`${s.key.name}/${m || '*'}`);
  return { inflight: p.pool.states().map((s) => s.inflight), room: p.room.size, active: p.app.proxy.inflight, probes };
}
const REST = (n: number) => ({ inflight: Array.from({ length: n }, () => 0), room: 0, active: 0, probes: [] });

describe('leases: every interleaving ends every lease once', () => {
  type Kind = 'ok' | 'stream' | 'limit' | 'server' | 'resetSent' | 'stallHead' | 'stallStream' | 'cutStream' | 'model' | 'resetWriting';
  const KINDS: readonly Kind[] = ['ok', 'stream', 'limit', 'server', 'resetSent', 'stallHead', 'stallStream', 'cutStream', 'model', 'resetWriting'];
  const answer = (k: Kind): FaultAction => {
    switch (k) {
      case 'ok':
        return OK;
      case 'stream':
        return act.stream(EVENTS);
      case 'limit':
        // Long enough to owe a probe (probeAfterMs 40), short enough to come back within maxWaitMs.
        return act.json(429, RATE_LIMITED, { 'retry-after-ms': '60' });
      case 'server':
        return act.json(500, { error: { message: 'boom', type: 'server_error', param: null, code: null } });
      case 'resetSent':
        return act.resetAfterRequest();
      case 'stallHead':
        return act.stallBeforeHeaders();
      case 'stallStream':
        return act.stream(EVENTS, { stallAfter: 1 });
      case 'cutStream':
        return act.stream(EVENTS, { truncateAfter: 1 });
      case 'model':
        return act.json(403, { error: { message: 'Project `p` does not have access to model `m-b`', type: 'invalid_request_error', param: null, code: 'model_not_found' } });
      case 'resetWriting':
        return act.resetBeforeBody();
    }
  };
  const plan = fc.array(
    fc.record({
      kinds: fc.array(fc.constantFrom(...KINDS), { minLength: 1, maxLength: 4 }),
      leaveAfterMs: fc.option(fc.integer({ min: 0, max: 150 }), { nil: undefined }),
      stream: fc.boolean(),
      model: fc.constantFrom('m-a', 'm-b'),
      startAfterMs: fc.integer({ min: 0, max: 60 }),
    }),
    { minLength: 3, maxLength: 10 },
  );

  it('random upstream faults x random client departures: in-flight 0, room empty, no probe held, no request left active', async () => {
    await fc.assert(
      fc.asyncProperty(plan, async (requests) => {
        const tries = new Map<number, number>();
        const up: FaultUpstream = await startFaultUpstream(() =>
          act.afterBody((r) => {
            const tag = Number((JSON.parse(r.body.toString()) as { tag: number }).tag);
            const n = tries.get(tag) ?? 0;
            tries.set(tag, n + 1);
            const kinds = requests[tag]!.kinds;
            return answer(kinds[n] ?? 'ok');
          }),
        );
        const proxy = await startProxy({
          upstreamUrl: up.url,
          keys: KEYS,
          retry: { maxRetries: 2, backoffBaseMs: 1, backoffMaxMs: 4, headersTimeoutMs: 120, streamHeadersTimeoutMs: 120, idleTimeoutMs: 120, maxWaitMs: 250, timeoutMs: 3_000 },
          cooldown: { probeAfterMs: 40, backoffBaseMs: 20, backoffMaxMs: 60 },
        });
        const agent = new Agent();
        try {
          await Promise.all(
            requests.map(async (q, tag) => {
              await new Promise((r) => setTimeout(r, q.startAfterMs));
              const ctl = new AbortController();
              const leave = q.leaveAfterMs === undefined ? undefined : setTimeout(() => ctl.abort(), q.leaveAfterMs);
              try {
                const res = await request(`${proxy.url}/v1/chat/completions`, {
                  dispatcher: agent,
                  method: 'POST',
                  headers: { 'content-type': 'application/json' },
                  body: chat(q.model, `,"tag":${tag}${q.stream ? ',"stream":true' : ''}`),
                  signal: ctl.signal,
                });
                await res.body.text();
              } catch {
                // left, or cut: what matters is what keypool holds afterwards
              } finally {
                clearTimeout(leave);
              }
            }),
          );
          await waitFor(() => JSON.stringify(atRest(proxy)) === JSON.stringify(REST(KEYS.length)), 3_000).catch(() => undefined);
          expect(atRest(proxy)).toEqual(REST(KEYS.length));
          expect(up.scriptErrors).toEqual([]);
        } finally {
          await agent.destroy();
          await up.close();
          await proxy.close();
        }
      }),
      { numRuns: 25, seed: 20261201 },
    );
  }, 120_000);
});

describe('probes: a probe that fails in any way is released', () => {
  /** name, the probe's answer, whether the request streams, what a later request gets. */
  const failures: [string, FaultAction, boolean, number?][] = [
    ['500', act.json(500, { error: { message: 'boom', type: 'server_error', param: null, code: null } }), false],
    ['reset after the request was sent', act.resetAfterRequest(), false],
    ['reset while writing', act.resetBeforeBody(), false],
    ['no head in time', act.stallBeforeHeaders(), false],
    ['a stream that stalls', act.stream(EVENTS, { stallAfter: 1 }), true],
    ['a stream the upstream cuts', act.stream(EVENTS, { truncateAfter: 1 }), true],
    ['another 429', act.json(429, RATE_LIMITED, { 'retry-after-ms': '60' }), false],
    ['403 about the model', act.json(403, { error: { message: 'Project `p` does not have access to model `gpt-4o-mini`', type: 'invalid_request_error', param: null, code: 'model_not_found' } }), false, 403],
    ['400 delivered', act.json(400, { error: { message: 'bad', type: 'invalid_request_error', param: null, code: null } }), false],
  ];
  for (const [name, fault, stream, laterStatus = 200] of failures) {
    it(`the probe attempt gets ${name}: no probe held afterwards, the key serves again`, async () => {
      const up = await startFaultUpstream((_r, i) => (i === 0 ? act.json(429, RATE_LIMITED, { 'retry-after-ms': '60' }) : i === 1 ? fault : stream ? act.stream(EVENTS) : OK));
      closers.push(() => up.close());
      const proxy = await startProxy({
        upstreamUrl: up.url,
        keys: KEYS.slice(0, 1),
        retry: { maxRetries: 1, backoffBaseMs: 1, backoffMaxMs: 2, headersTimeoutMs: 120, streamHeadersTimeoutMs: 120, idleTimeoutMs: 120, maxWaitMs: 1_000 },
        cooldown: { probeAfterMs: 40, backoffBaseMs: 20, backoffMaxMs: 60 },
      });
      closers.push(() => proxy.close());
      const body = chat('gpt-4o-mini', stream ? ',"stream":true' : '');
      const first = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await first.body.text().catch(() => '');
      expect(up.requests.length, 'the 429, then the probe').toBeGreaterThanOrEqual(2);
      await waitFor(() => JSON.stringify(atRest(proxy)) === JSON.stringify(REST(1)), 2_000).catch(() => undefined);
      expect(atRest(proxy)).toEqual(REST(1));
      await new Promise((r) => setTimeout(r, 80));
      const later = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await later.body.text();
      // A 403 about the model makes the key unavailable for it (modelUnavailableMs): its answer is given again.
      expect(later.statusCode).toBe(laterStatus);
    });
  }
});

describe('per-attempt timeouts', () => {
  it('retry.headersTimeoutMs does not run while a large body is still being written: a 16 MiB upload over a slow link gets through once', async () => {
    // Tried: an upload that takes ~6 s to write against a 1 s headers timeout. undici arms its headers
    // timer only once the body is written, so the attempt is not cut mid-upload (or re-uploaded).
    const up = await startRawUpstream((req) => writeJson(req.socket, 200, { id: 'ok', bytes: req.body.length }), { readBytes: 32 * 1024, readEveryMs: 10 });
    closers.push(() => up.close());
    const proxy = await startProxy({
      upstreamUrl: up.url,
      keys: KEYS,
      retry: { maxRetries: 1, backoffBaseMs: 1, backoffMaxMs: 2, headersTimeoutMs: 1_000, streamHeadersTimeoutMs: 1_000 },
    });
    closers.push(() => proxy.close());
    const body = chat('gpt-4o-mini', `,"pad":"${'a'.repeat(16 * 1024 * 1024)}"`);
    const res = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const text = await res.body.text();
    expect(res.statusCode, text.slice(0, 300)).toBe(200);
    expect(up.heads, 'uploads started').toHaveLength(1);
  }, 60_000);
});
