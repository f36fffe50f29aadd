// keypool (3 pool keys) in front of a fault upstream, a client that records everything it is shown, and
// the checks every fault test ends with: the pool at rest (no key in flight, nobody waiting) and no pool
// key in any response or log line. Test files call settleHarnesses() in afterEach.
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'undici';
import { expect } from 'vitest';
import { startFaultUpstream, type FaultUpstream, type Script } from './fault-upstream.js';
import { startProxy, type TestProxy, type TestProxyOptions } from './proxy.js';
import { waitFor } from './wait.js';

export const KEYS = ['sk-fault-pool-key-zero-0aaaaaaaaaaaa', 'sk-fault-pool-key-one-1bbbbbbbbbbbb', 'sk-fault-pool-key-two-2cccccccccccc'];
export const MAX_RETRIES = 2;
/** Charged attempts barely wait, so tests stay fast; per-attempt timeouts long unless a test sets its own. */
const RETRY = { maxRetries: MAX_RETRIES, backoffBaseMs: 1, backoffMaxMs: 2, headersTimeoutMs: 5_000, streamHeadersTimeoutMs: 5_000, idleTimeoutMs: 5_000 };

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  /** What broke while reading the body, if anything. */
  readonly bodyError: string | undefined;
}

export interface CallOptions {
  readonly method?: 'GET' | 'POST';
  readonly path?: string;
  readonly body?: string | Buffer;
}

export interface Harness {
  readonly up: FaultUpstream;
  readonly proxy: TestProxy;
  /** Everything a client of this proxy has been shown, for the secret search. */
  readonly seen: string[];
  /** Replies that came without x-keypool-attempts (the contract puts it on every response). */
  readonly unnumbered: readonly string[];
  call(opts?: CallOptions): Promise<Reply>;
}

const open: Harness[] = [];
const closers: (() => Promise<unknown>)[] = [];

/** For afterEach: checks every harness of the test is at rest and leaked nothing, then closes all. */
export async function settleHarnesses(): Promise<void> {
  try {
    for (const h of open) await expectAtRest(h);
  } finally {
    open.length = 0;
    while (closers.length > 0) await closers.pop()!();
  }
}

/**
 * The retry and cooldown fields of the reliability contract (issue 10), typed here until the schema has
 * them, so these tests compile against the config before and after the new attempt loop lands.
 */
export interface ContractRetry {
  replayAfterSend?: boolean;
  headersTimeoutMs?: number;
  streamHeadersTimeoutMs?: number;
  idleTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}
export interface ContractCooldown {
  modelUnavailableMs?: number;
  disabledMs?: number;
}
export type HarnessOptions = Omit<Partial<TestProxyOptions>, 'retry' | 'cooldown'> & {
  retry?: NonNullable<TestProxyOptions['retry']> & ContractRetry;
  cooldown?: NonNullable<TestProxyOptions['cooldown']> & ContractCooldown;
};

/**
 * Starts a fault upstream with the script and keypool in front of it (or in front of `upstreamUrl`).
 * `retry` is merged over the fast defaults above; everything else goes to startProxy as is.
 */
export async function harness(script: Script, o: HarnessOptions = {}): Promise<Harness> {
  const up = await startFaultUpstream(script);
  closers.push(() => up.close());
  const proxy = await startProxy({ keys: KEYS, ...o, upstreamUrl: o.upstreamUrl ?? up.url, retry: { ...RETRY, ...o.retry } });
  closers.push(() => proxy.close());
  const agent = new Agent();
  closers.push(() => agent.destroy());
  const seen: string[] = [];
  const unnumbered: string[] = [];
  const call = async (c: CallOptions = {}): Promise<Reply> => {
    const method = c.method ?? 'POST';
    const res = await request(`${proxy.url}${c.path ?? '/v1/chat/completions'}`, {
      dispatcher: agent,
      method,
      headers: { authorization: 'Bearer sk-agent-placeholder', ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      body: method === 'POST' ? (c.body ?? chat()) : undefined,
    });
    let text = '';
    let bodyError: string | undefined;
    try {
      for await (const chunk of res.body) text += String(chunk);
    } catch (err) {
      bodyError = (err as { code?: string }).code ?? String(err);
    }
    seen.push(`${res.statusCode} ${JSON.stringify(res.headers)} ${text}`);
    if (res.headers['x-keypool-attempts'] === undefined) unnumbered.push(`${method} ${res.statusCode}`);
    return { status: res.statusCode, headers: res.headers, text, bodyError };
  };
  const h: Harness = { up, proxy, seen, unnumbered, call };
  open.push(h);
  return h;
}

/**
 * (c) and (d): every lease ended, nobody waiting, and no pool key in anything shown or logged; also
 * that the script ran cleanly and every reply carried x-keypool-attempts.
 */
export async function expectAtRest(h: Harness): Promise<void> {
  expect(h.up.scriptErrors, 'errors thrown by the fault script').toEqual([]);
  expect(h.unnumbered, 'replies without x-keypool-attempts').toEqual([]);
  const rest = (): boolean => h.proxy.pool.states().every((s) => s.inflight === 0) && h.proxy.room.size === 0;
  // Leases of delivered answers end just after the client has the last byte: give them a moment.
  await waitFor(rest, 2_000).catch(() => undefined);
  expect(h.proxy.pool.states().map((s) => s.inflight), 'in-flight per key').toEqual(h.proxy.pool.states().map(() => 0));
  expect(h.proxy.room.size, 'waiting room').toBe(0);
  const shown = [...h.seen, ...h.proxy.logs].join('\n');
  for (const k of KEYS) expect(shown.includes(k), `pool key ${k.slice(0, 12)}… shown or logged`).toBe(false);
}

export function chat(model = 'gpt-4o-mini', extra = ''): string {
  return `{"model":"${model}","messages":[{"role":"user","content":"hi"}]${extra}}`;
}

/** keypool's (or the upstream's) OpenAI error code, if the body is one. */
export function errorCode(r: Reply): unknown {
  try {
    return (JSON.parse(r.text) as { error?: { code?: unknown } }).error?.code;
  } catch {
    return undefined;
  }
}

/** The `data:` payloads of an SSE body, in order (comments and blank lines skipped). */
export function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .map((block) =>
      block
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('\n'),
    )
    .filter((d) => d !== '');
}
