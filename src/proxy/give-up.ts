// What a client is told when keypool gives up on a request: an OpenAI-shaped error chosen by what failed
// last, with honest timing (when a key can really serve this request again) and `x-should-retry: false`
// whenever an immediate retry by the client cannot succeed, so SDK retries never multiply keypool's own.
// Or, when the last failure was an upstream answer nobody can do better than, that answer itself.
import { KeypoolError } from '../errors.js';
import type { Demand, KeyPool, UpstreamAnswer } from '../keys/pool.js';
import type { Scrubber } from '../keys/scrub.js';
import type { AbortWhy } from './rotate-types.js';

export type Failure =
  // The upstream's body is kept raw: it is only turned into a (scrubbed) message if the request fails.
  | { readonly kind: 'limit'; readonly status: number; readonly body: string }
  | { readonly kind: 'auth'; readonly status: number; readonly body: string }
  /** An answer about the request or model that no key did better on: given to the client as it is. */
  | { readonly kind: 'answer'; readonly answer: UpstreamAnswer; readonly modelRefusal: boolean }
  | { readonly kind: 'server'; readonly status: number; readonly body: string }
  | { readonly kind: 'network'; readonly reason: string }
  | { readonly kind: 'timeout' };

export interface GiveUpDeps {
  readonly pool: KeyPool;
  readonly clock: { now(): number };
  readonly scrub: Scrubber;
}

/**
 * At or past this wait the openai SDK ignores `retry-after-ms` and retries on its own schedule (0.5-8 s):
 * telling it not to retry is then the honest answer.
 */
export const CLIENT_RETRY_HORIZON_MS = 60_000;
/** What is said when only an event (a free slot, a probe's end) can free a key: no time is known. */
const UNKNOWN_WAIT_MS = 1_000;
const NO_RETRY = Object.freeze({ 'x-should-retry': 'false' });

export type GiveUp =
  | { readonly kind: 'error'; readonly error: KeypoolError }
  /** `modelRefused`: every key refused the model (another upstream may have it). */
  | { readonly kind: 'answer'; readonly answer: UpstreamAnswer; readonly modelRefused: boolean };

/** What the client gets when the request cannot be served, shaped by what failed last. */
export function giveUp(deps: GiveUpDeps, demand: Demand, last: Failure | undefined, retries: number): GiveUp {
  const { pool, clock } = deps;
  const n = pool.size;
  const now = clock.now();
  if (pool.usable === 0) {
    return error(
      new KeypoolError(
        'keypool_no_usable_keys',
        `All ${n} key(s) of upstream ${pool.upstream} are disabled (the upstream rejected them: 401, or a 403 naming the key). Fix or replace the keys; disabled keys are tried again after cooldown.disabledMs.`,
        { headers: NO_RETRY },
      ),
    );
  }
  if (last?.kind === 'answer') return { kind: 'answer', answer: last.answer, modelRefused: last.modelRefusal };
  const remembered = pool.answerFor(demand.model, now);
  if (remembered !== undefined) return { kind: 'answer', answer: remembered, modelRefused: true };
  const said = last && (last.kind === 'limit' || last.kind === 'auth' || last.kind === 'server') ? deps.scrub(upstreamMessage(last.body)) : '';
  const lastWords = said !== '' ? ` Last upstream error: ${said}` : '';
  switch (last?.kind) {
    case 'server':
      return error(
        new KeypoolError('keypool_upstream_error', `Upstream ${pool.upstream} answered ${last.status} on every try (${retries} retries).${lastWords}`, {
          status: last.status,
          headers: NO_RETRY,
        }),
      );
    case 'network':
      return error(
        new KeypoolError('keypool_upstream_unreachable', `Upstream ${pool.upstream} could not be reached (${last.reason}) after ${retries} retries.`, {
          headers: NO_RETRY,
        }),
      );
    case 'timeout':
      return error(
        new KeypoolError(
          'keypool_upstream_timeout',
          `Upstream ${pool.upstream} sent no response head within the headers timeout on any try (${retries} retries).`,
          { headers: NO_RETRY },
        ),
      );
    default:
      break;
  }
  const wait = waitFor(pool, demand, now);
  const status = last?.kind === 'limit' ? last.status : 429;
  return error(
    new KeypoolError(
      'keypool_pool_exhausted',
      `All ${pool.usable} usable key(s) of upstream ${pool.upstream} are rate-limited or out of credit ` +
        `(${retries} retries used); the earliest is available again in ${wait.seconds}s.${lastWords}`,
      { status, headers: wait.headers },
    ),
  );
}

/**
 * The room is full: come back when a key frees, as far as anyone knows, and not sooner than a waiter can
 * be served (a key free for this demand may be spoken for by the waiters ahead of it).
 */
export function queueFull(deps: GiveUpDeps, demand: Demand): KeypoolError {
  const wait = waitFor(deps.pool, demand, deps.clock.now(), UNKNOWN_WAIT_MS);
  return new KeypoolError(
    'keypool_queue_full',
    `Every key of upstream ${deps.pool.upstream} is busy or cooling and the waiting room is full (queue.maxSize); retry in ${wait.seconds}s.`,
    { headers: wait.headers },
  );
}

/** The upstream may already be running the request: sending it again could run (and bill) it twice. */
export function replayRefused(deps: GiveUpDeps, method: string, reason: string): KeypoolError {
  return new KeypoolError(
    'keypool_upstream_may_have_processed',
    `The connection to upstream ${deps.pool.upstream} broke (${reason}) after the whole ${method} request was sent, before any answer: ` +
      'it may have been processed (and billed), so keypool did not send it again (retry.replayAfterSend is off).',
    { headers: NO_RETRY },
  );
}

/** A non-streaming request with no head within retry.headersTimeoutMs: it may still be running upstream. */
export function headersTimeoutRefused(deps: GiveUpDeps & { readonly retry: { readonly headersTimeoutMs: number } }, method: string): KeypoolError {
  return new KeypoolError(
    'keypool_upstream_timeout',
    `Upstream ${deps.pool.upstream} sent no response head within retry.headersTimeoutMs (${deps.retry.headersTimeoutMs} ms); ` +
      `a non-streaming ${method} may still be running there, so it was not sent again (retry.replayAfterSend is off).`,
    { headers: NO_RETRY },
  );
}

function error(e: KeypoolError): GiveUp {
  return { kind: 'error', error: e };
}

/** When a key can really serve the demand: Retry-After (s), retry-after-ms, and x-should-retry: false when it is far off. */
function waitFor(pool: KeyPool, demand: Demand, now: number, atLeastMs = 0): { seconds: number; headers: Readonly<Record<string, string>> } {
  const next = pool.nextAvailableAt(demand, now);
  const waitMs = Math.max(atLeastMs, next === undefined ? UNKNOWN_WAIT_MS : Number.isFinite(next) ? Math.max(0, next - now) : UNKNOWN_WAIT_MS);
  const ms = Math.max(1, Math.ceil(waitMs));
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  const headers: Record<string, string> = { 'retry-after': String(seconds), 'retry-after-ms': String(ms) };
  if (ms >= CLIENT_RETRY_HORIZON_MS) headers['x-should-retry'] = 'false';
  return { seconds, headers };
}

/** OpenAI's `error.message` when the body has one, else the start of the text. */
function upstreamMessage(bodyText: string): string {
  try {
    const parsed: unknown = JSON.parse(bodyText);
    const msg = (parsed as { error?: { message?: unknown } } | null)?.error?.message;
    if (typeof msg === 'string') return msg.slice(0, 500);
  } catch {
    // not JSON: fall through
  }
  return bodyText.replace(/\s+/g, ' ').trim().slice(0, 200);
}

export function describeNetworkError(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : undefined;
  return code ?? (err instanceof Error ? err.name : 'network error');
}

/**
 * A failure of keypool's own dispatcher (closed or destroyed while the request was handed to it), not
 * of the upstream: it says nothing about the upstream's health, so no circuit counts it.
 */
export function isLocalDispatchFailure(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED';
}

/**
 * The error for a request stopped before it was served: at shutdown (after an attempt went out, the
 * upstream may be running it: the client must not send it again), or at the deadline. A client that
 * left gets nothing (undefined).
 */
export function stoppedError(why: AbortWhy, sent: boolean, timeoutMs: number): KeypoolError | undefined {
  if (why === 'shutdown') {
    const message = sent
      ? 'keypool is shutting down; the upstream may have the request already, so it should not be sent again.'
      : 'keypool is shutting down; retry on another replica or shortly.';
    return new KeypoolError('keypool_shutting_down', message, sent ? { headers: { 'x-should-retry': 'false' } } : {});
  }
  if (why === 'deadline') return new KeypoolError('keypool_upstream_timeout', `No answer within the request deadline (${timeoutMs} ms).`, { headers: { 'x-should-retry': 'false' } });
  return undefined;
}

/** An upstream skipped while its circuit is open; a wait of a minute or more tells clients not to retry blindly. */
export function circuitOpenError(upstream: string, openForMs: number): KeypoolError {
  const waitMs = Math.max(1_000, openForMs);
  const s = Math.ceil(waitMs / 1000);
  return new KeypoolError('keypool_circuit_open', `Upstream ${upstream} failed too often lately (its circuit is open); retry in ${s}s.`, {
    headers: { 'retry-after': String(s), 'retry-after-ms': String(Math.ceil(waitMs)), ...(waitMs >= 60_000 ? { 'x-should-retry': 'false' } : {}) },
  });
}
