// The one retry policy: what to do after one attempt, from what happened to it (the phase a failure came
// in, or the answer's status, headers and body) and where the request stands (its budget). Pure, and
// table-tested row by row. The attempt loop (rotate.ts) only carries its decisions out.
// The double-billing guard lives here: once the upstream may have the whole request, a POST or PATCH is
// never sent again (unless retry.replayAfterSend), because it may already be running and billed.
// Rules learnt from undici's retry-handler (phase and method decide replay) and openai-node
// (`x-should-retry` overrides the status).
import { isOutOfCredit, rateLimitedUntil, type CooldownSettings } from '../keys/cooldown.js';
import type { CoolReason, DisableReason } from '../keys/key-state.js';
import { header, type HeaderBag } from '../keys/rate-limit-headers.js';
import type { FailPhase } from './attempt.js';
import type { UsageCounter } from '../keys/ledger.js';
import { blameOf } from './blame.js';
import { isCreditTooLow, isDailyQuota, isKeyInvalid, isRequestSizedCredit, retryDelayInBody, untilPacificMidnightMs } from './provider-signals.js';

export interface PolicySettings extends CooldownSettings {
  /** Re-send a non-idempotent request after the upstream may have received all of it. */
  readonly replayAfterSend: boolean;
  /** Whose error bodies these are: some providers say in the body what others say in status and headers. */
  readonly dialect: 'openai' | 'anthropic' | 'gemini';
}

/** What one attempt came to, as far as the policy needs to know. */
export type AttemptResult =
  | { readonly kind: 'failed'; readonly phase: FailPhase; readonly timedOut: boolean }
  /** `body` is undefined until read: the policy says when it needs it (`read-body`). */
  | { readonly kind: 'answered'; readonly status: number; readonly headers: HeaderBag; readonly body: string | undefined };

/** Where the request stands when the attempt is judged: a frozen value, one per attempt. */
export interface AttemptContext {
  /** Attempts made so far, this one included. */
  readonly attempts: number;
  /** Charged attempts still allowed (retry.maxRetries minus those spent). */
  readonly retriesLeft: number;
}

export interface PolicyInput {
  readonly method: string;
  /** The request's model; '' when unknown. */
  readonly model: string;
  /** The request streams: its head comes before any token is generated. */
  readonly stream: boolean;
  /** Read 400 bodies too (the request has a fallback for "context length exceeded"). */
  readonly readBadRequests?: boolean;
  readonly result: AttemptResult;
  readonly context: AttemptContext;
  readonly now: number;
  /** The key's consecutive rate limits on this model, this one included (>= 1). */
  readonly streak: number;
  /** A number in [0, 1) for jitter. */
  readonly random: number;
  readonly settings: PolicySettings;
}

/** What happens to the key that answered. */
export type Penalty =
  /** Skip it until `until`: for the request's model, or key-wide (credit). */
  | { readonly kind: 'cool'; readonly scope: 'model' | 'key'; readonly reason: CoolReason; readonly until: number }
  /** It cannot be used at all (invalid, revoked): disabled until `until`. */
  | { readonly kind: 'disable'; readonly reason: DisableReason; readonly until: number }
  /** Not the key's fault as far as anyone can tell: only this request moves on. */
  | { readonly kind: 'none' };

/** Why the request moved on, for the error it gets if it runs out of keys. */
export type RotateCause = 'limit' | 'credit' | 'auth' | 'answer';
export type RetryCause = 'server' | 'network' | 'timeout';

export type Decision =
  /** Hand the answer to the client as it is; `penalty` still applies to the key (a 429 with x-should-retry: false). */
  | { readonly kind: 'deliver'; readonly penalty: Penalty }
  /** The body decides: read it and ask again. `provisional` applies at once (a 429 cools its key at the head). */
  | { readonly kind: 'read-body'; readonly provisional: Penalty }
  /**
   * Another key may do better: the walk to an untried key is free. `answer`: when no key is left, the
   * client gets this upstream answer itself (a refusal about the model, or one nobody can explain).
   */
  | { readonly kind: 'rotate'; readonly penalty: Penalty; readonly cause: RotateCause }
  /** Not the key's fault: try again, spending one unit of budget after a backoff. */
  | { readonly kind: 'retry'; readonly cause: RetryCause }
  /** Stop: the budget is spent, or sending again could run the request twice. */
  | { readonly kind: 'fail'; readonly why: 'budget_spent' | 'replay_refused'; readonly cause: RetryCause };

const NONE: Penalty = Object.freeze({ kind: 'none' });
const DELIVER: Decision = Object.freeze({ kind: 'deliver', penalty: NONE });

/** RFC 9110 §9.2.2: sending these twice has the effect of sending them once. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

export function decide(input: PolicyInput): Decision {
  const { result } = input;
  if (result.kind === 'failed') return afterFailure(input, result);
  const { status, headers, body } = result;
  const shouldRetry = header(headers, 'x-should-retry')?.trim().toLowerCase();
  if (status < 400) return DELIVER;
  if (status === 429) {
    const limited = coolForLimit(input);
    if (shouldRetry === 'false') return { kind: 'deliver', penalty: limited };
    if (body === undefined) return { kind: 'read-body', provisional: limited };
    if (isOutOfCredit(body)) return { kind: 'rotate', penalty: coolForCredit(input), cause: 'credit' };
    if (input.settings.dialect === 'gemini') return { kind: 'rotate', penalty: geminiLimit(input, body, limited), cause: 'limit' };
    return { kind: 'rotate', penalty: limited, cause: 'limit' };
  }
  // Anthropic says "out of credit" and Gemini "invalid key" with a 400: the body tells them from a bad request.
  if (status === 400 && (input.settings.dialect !== 'openai' || input.readBadRequests === true) && shouldRetry !== 'true') {
    if (body === undefined) return { kind: 'read-body', provisional: NONE };
    if (input.settings.dialect === 'anthropic' && isCreditTooLow(body)) return { kind: 'rotate', penalty: coolForCredit(input), cause: 'credit' };
    if (input.settings.dialect === 'gemini' && isKeyInvalid(body)) return { kind: 'rotate', penalty: disable(input, 'unauthorized'), cause: 'auth' };
    return DELIVER;
  }
  if (shouldRetry === 'false') return DELIVER;
  if (status === 402) {
    // OpenRouter answers 402 when *this request's* max_tokens costs more than the key can afford: the key
    // serves smaller requests at once, so it is the request's answer, not a verdict on the key.
    if (body === undefined) return { kind: 'read-body', provisional: NONE };
    if (isRequestSizedCredit(body)) return DELIVER;
    return { kind: 'rotate', penalty: coolForCredit(input), cause: 'credit' };
  }
  if (status === 401) {
    if (body === undefined) return { kind: 'read-body', provisional: NONE };
    // A restricted key without an endpoint's scope (OpenAI's `missing_scope`) still serves other
    // endpoints: one more key's opinion, and no disable.
    if (blameOf(401, body, input.model) === 'unknown') return { kind: 'rotate', penalty: NONE, cause: 'answer' };
    return { kind: 'rotate', penalty: disable(input, 'unauthorized'), cause: 'auth' };
  }
  if (status === 403 || (status === 404 && input.model !== '')) {
    if (body === undefined) return { kind: 'read-body', provisional: NONE };
    switch (blameOf(status, body, input.model)) {
      case 'key':
        return { kind: 'rotate', penalty: disable(input, 'forbidden'), cause: 'auth' };
      case 'model':
        return {
          kind: 'rotate',
          penalty: { kind: 'cool', scope: 'model', reason: 'model_unavailable', until: input.now + input.settings.modelUnavailableMs },
          cause: 'answer',
        };
      case 'unknown':
        return { kind: 'rotate', penalty: NONE, cause: 'answer' };
      case 'request':
        break;
    }
    return shouldRetry === 'true' ? retryOrFail(input, 'server') : DELIVER;
  }
  if (status >= 500 || status === 408 || shouldRetry === 'true') return retryOrFail(input, 'server');
  return DELIVER;
}

function afterFailure(input: PolicyInput, r: Extract<AttemptResult, { kind: 'failed' }>): Decision {
  // Nothing reached the upstream whole: any method may go again.
  if (r.phase !== 'sent') return retryOrFail(input, 'network');
  // No head within the headers timeout: the user's bound says the upstream is dead, and the attempt was
  // cancelled (its connection closed). A stream's head comes before its first token, so a stream with
  // none has not generated anything: it fails over. A non-streaming POST may be generating right now
  // (its head comes at the end): sending it again could bill it twice, so it does not (replayAfterSend
  // says otherwise).
  if (r.timedOut) {
    if (input.stream || isIdempotent(input.method) || input.settings.replayAfterSend) return retryOrFail(input, 'timeout');
    return { kind: 'fail', why: 'replay_refused', cause: 'timeout' };
  }
  if (isIdempotent(input.method) || input.settings.replayAfterSend) return retryOrFail(input, 'network');
  return { kind: 'fail', why: 'replay_refused', cause: 'network' };
}

function retryOrFail(input: PolicyInput, cause: RetryCause): Decision {
  return input.context.retriesLeft > 0 ? { kind: 'retry', cause } : { kind: 'fail', why: 'budget_spent', cause };
}

function coolForLimit(input: PolicyInput): Penalty {
  const r = input.result as Extract<AttemptResult, { kind: 'answered' }>;
  const until = rateLimitedUntil(r.headers, input.now, input.streak, input.random, input.settings);
  return { kind: 'cool', scope: 'model', reason: 'rate_limited', until };
}

/** Gemini's 429 says in its body how long (RetryInfo), and whether the day's quota is gone (QuotaFailure). */
function geminiLimit(input: PolicyInput, body: string, fromHeaders: Penalty): Penalty {
  const { now, settings } = input;
  if (isDailyQuota(body)) {
    return { kind: 'cool', scope: 'model', reason: 'rate_limited', until: now + Math.min(untilPacificMidnightMs(now), settings.maxMs) };
  }
  const delay = retryDelayInBody(body, settings.maxMs);
  return delay === undefined || delay < 1 ? fromHeaders : { kind: 'cool', scope: 'model', reason: 'rate_limited', until: Math.ceil(now + delay) };
}

function coolForCredit(input: PolicyInput): Penalty {
  return { kind: 'cool', scope: 'key', reason: 'out_of_credit', until: input.now + input.settings.outOfCreditMs };
}

function disable(input: PolicyInput, reason: DisableReason): Penalty {
  return { kind: 'disable', reason, until: input.now + input.settings.disabledMs };
}

/**
 * How long a charged attempt waits before it goes, at least (it also waits for a key): the request's own
 * exponential backoff, base·2^(n-1) for its n-th charged attempt, capped, jittered to 50-100 %. A storm
 * of 429s across every key then never turns into a burst of retries; the free walk is never slowed.
 */
export function retryDelayMs(charged: number, random: number, base: number, max: number): number {
  return Math.round(Math.min(max, base * 2 ** Math.min(20, Math.max(0, charged - 1))) * (0.5 + 0.5 * random));
}

/** Whether two penalties are the same (a penalty applied early, from the head, is not applied twice). */
export function samePenalty(a: Penalty, b: Penalty): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'cool' && b.kind === 'cool') return a.reason === b.reason && a.scope === b.scope && a.until === b.until;
  return a.kind === 'none';
}

/** The usage counter a failed attempt adds to (shared usage mirrors the pool's own stats). */
export function usageOf(p: Penalty): UsageCounter | undefined {
  if (p.kind !== 'cool') return undefined;
  return p.reason === 'rate_limited' ? 'rateLimited' : p.reason === 'out_of_credit' ? 'outOfCredit' : undefined;
}
