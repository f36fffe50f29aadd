// Times an upstream states in headers, and what keypool tells clients about when to come back: every time
// from a header is capped (cooldown.maxMs), an epoch reset is read as a time, a reset that is no number
// falls back to backoff; and the official openai SDK at its default maxRetries cannot turn a 429 storm
// into a burst (issue 10, items 3, 4, 9 and 11). afterEach checks the pool is at rest and nothing leaked.
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { act, type FaultAction } from '../helpers/fault-upstream.js';
import { errorCode, harness, KEYS, settleHarnesses, type Harness, type Reply } from '../helpers/fault-harness.js';
import { FakeClock } from '../helpers/fake-clock.js';

afterEach(settleHarnesses);
/** A contract test that hangs (an old loop waiting for a silent upstream) fails fast instead of at 20 s. */
const BOUNDED = { timeout: 5_000 };

const OK = act.json(200, { id: 'chatcmpl-ok', object: 'chat.completion', choices: [] });
const RATE_LIMITED_BODY = { error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' } };

describe('times from headers', BOUNDED, () => {
  const MAX_MS = 120_000;
  const BACKOFF_MAX_MS = 5_000;
  /**
   * What a careful user expects of each value:
   * - capped: no longer than cooldown.maxMs (an absurd finite value may also fall back to backoff, which is shorter);
   * - in30s: an epoch timestamp 30 s ahead is read as that time, not as seconds or ms from now;
   * - backoff: a value that is no usable number (non-finite, garbage) says nothing: at most the backoff ceiling.
   */
  type Expect = 'capped' | 'in30s' | 'backoff';
  const exhausted = (reset: (now: number) => string) => (now: number) => ({
    'x-ratelimit-limit-requests': '100',
    'x-ratelimit-remaining-requests': '0',
    'x-ratelimit-reset-requests': reset(now),
  });
  const cases: [string, (now: number) => Record<string, string>, Expect, readonly number[]][] = [
    ['x-ratelimit-reset-requests: 99999999999s', exhausted(() => '99999999999s'), 'capped', [200, 429]],
    ['an epoch-seconds reset', exhausted((now) => String(Math.floor(now / 1000) + 30)), 'in30s', [200, 429]],
    ['an epoch-ms reset', exhausted((now) => String(now + 30_000)), 'in30s', [200, 429]],
    ['a reset that parses to Infinity', exhausted(() => '9'.repeat(400)), 'backoff', [200, 429]],
    ['a garbage reset', exhausted(() => 'soon'), 'backoff', [200, 429]],
    ['Retry-After: 99999999999', () => ({ 'retry-after': '99999999999' }), 'capped', [429]],
    ['retry-after-ms: 1e400 spelt out', () => ({ 'retry-after-ms': '9'.repeat(400) }), 'backoff', [429]],
  ];

  for (const [name, headers, expectation, statuses] of cases) {
    for (const status of statuses) {
      it(`${name} on a ${status}: ${expectation}; the keys serve again after that time`, async () => {
        const clock = new FakeClock();
        // The first answer of each key carries the header; later answers are plain 200s.
        const h = await harness(
          (_r, i): FaultAction => (i < KEYS.length ? act.json(status, status === 200 ? {} : RATE_LIMITED_BODY, headers(clock.now())) : OK),
          { clock, retry: { maxWaitMs: 0 }, cooldown: { maxMs: MAX_MS, backoffBaseMs: 1_000, backoffMaxMs: BACKOFF_MAX_MS } },
        );
        let r: Reply;
        if (status === 200) {
          // Each 200 says its key has no request left: three requests, one per key, then the pool is spent.
          for (let i = 0; i < KEYS.length; i++) expect((await h.call()).status).toBe(200);
          r = await h.call();
        } else {
          r = await h.call();
        }
        // Nothing more reached the upstream once the pool was spent (a reset that says nothing may not spend it).
        if (r.status !== 200) expect(h.up.requests).toHaveLength(KEYS.length);
        const wait = checkGiveUp(r, expectation);
        clock.advance(wait + 1);
        const later = await h.call();
        expect(later.status, 'served once the stated time has passed').toBe(200);
      });
    }
  }

  /** Checks the give-up answer for the expectation; returns the longest the keys may stay away. */
  function checkGiveUp(r: Reply, e: Expect): number {
    if (e === 'backoff' && r.status === 200) return 0;
    expect(r.status).toBe(429);
    expect(errorCode(r)).toBe('keypool_pool_exhausted');
    const ms = Number(r.headers['retry-after-ms']);
    expect(Number.isFinite(ms) && ms > 0, `retry-after-ms ${String(r.headers['retry-after-ms'])}`).toBe(true);
    if (e === 'capped') expect(ms, 'retry-after-ms within cooldown.maxMs').toBeLessThanOrEqual(MAX_MS);
    if (e === 'backoff') expect(ms, 'retry-after-ms within the backoff ceiling').toBeLessThanOrEqual(BACKOFF_MAX_MS);
    if (e === 'in30s') {
      expect(ms, 'retry-after-ms: the epoch time, 30 s away').toBeGreaterThanOrEqual(29_000);
      expect(ms, 'retry-after-ms: the epoch time, 30 s away').toBeLessThanOrEqual(30_001);
    }
    expect(r.headers['retry-after']).toBe(String(Math.ceil(ms / 1000)));
    // An immediate retry cannot succeed when the earliest key is a minute or more away.
    if (ms >= 60_000) expect(r.headers['x-should-retry']).toBe('false');
    else expect(r.headers['x-should-retry']).not.toBe('false');
    return e === 'capped' ? MAX_MS : e === 'backoff' ? BACKOFF_MAX_MS : 30_001;
  }
});

describe('the openai SDK against an exhausted pool (no retry amplification)', BOUNDED, () => {
  it('2 keys that always answer 429 without a reset: bounded upstream attempts per create(), charged ones paced', async () => {
    const N = 2;
    const retry = { maxRetries: 3, backoffBaseMs: 50, backoffMaxMs: 200 };
    const h: Harness = await harness(() => act.json(429, RATE_LIMITED_BODY), {
      keys: KEYS.slice(0, N),
      retry,
      // 429s without a reset cool a key briefly; small so the SDK's honest waits keep the test short.
      cooldown: { backoffBaseMs: 20, backoffMaxMs: 200 },
    });
    const client = new OpenAI({ apiKey: 'sk-agent-placeholder', baseURL: `${h.proxy.url}/v1` });
    expect(client.maxRetries, "the SDK's default").toBe(2);

    const err = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    h.seen.push(String(e), JSON.stringify([...(e.headers?.entries() ?? [])]));

    // The bound. keypool gives up on one client request after exactly N + maxRetries attempts (the free
    // walk over N keys, then maxRetries charged ones). Its answer is a 429 whose retry-after-ms is the
    // real time until a key is back (well under 60 s here, so no x-should-retry: false), which the SDK
    // waits and then retries, maxRetries_sdk times. So one create() reaches the upstream at most
    // (maxRetries_sdk + 1) · (N + maxRetries) = 3 · 5 = 15 times, and each SDK try at most 5 times.
    const bound = (client.maxRetries + 1) * (N + retry.maxRetries);
    const attempts = h.up.requests;
    expect(attempts.length).toBeLessThanOrEqual(bound);
    // The SDK numbers its tries in x-stainless-retry-count; keypool forwards it, so attempts group by try.
    const tries = new Map<string, number[]>();
    for (const a of attempts) {
      const t = a.headers['x-stainless-retry-count'] ?? '?';
      tries.set(t, [...(tries.get(t) ?? []), a.at]);
    }
    expect([...tries.keys()].sort()).toEqual(['0', '1', '2']);
    // Pacing. Within one client request the first N attempts may be the free walk; every later one is
    // charged and waits at least backoff(c) = min(backoffMaxMs, backoffBaseMs·2^(c-1))·(0.5 + 0.5·random)
    // after the previous one, so at least half of that whatever the jitter. (If fewer than N were free,
    // the real charge count is higher and so is its floor: this check is the weaker one.) 2 ms of slack
    // for timer rounding between keypool's clock and the upstream's.
    for (const [t, ats] of tries) {
      expect(ats.length, `attempts of SDK try ${t}`).toBeLessThanOrEqual(N + retry.maxRetries);
      for (let i = N; i < ats.length; i++) {
        const c = i - N + 1;
        const floor = 0.5 * Math.min(retry.backoffMaxMs, retry.backoffBaseMs * 2 ** (c - 1));
        expect(ats[i]! - ats[i - 1]!, `gap before charged attempt ${c} of SDK try ${t}`).toBeGreaterThanOrEqual(floor - 2);
      }
    }
  });
});
