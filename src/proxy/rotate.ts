// The attempt loop: takes a key per attempt, sends, and carries out what the retry policy decides
// (retry-policy.ts). Walking the pool is free; the budget counts only attempts once every key is tried
// or cooling, and after faults that were not a key's (5xx, connection errors, timeouts):
//  1. An attempt with an untried key that is available now costs nothing.
//  2. Otherwise an attempt costs one unit of retry.maxRetries, after the request's own backoff and
//     after waiting for a key if one comes back within retry.maxWaitMs and the deadline.
// So N keys that all answer 429 see exactly N + maxRetries attempts.
// Every lease taken is ended exactly once, whatever happens (attempt over, refused, client gone).
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import { KeypoolError } from '../errors.js';
import type { Demand, KeyPool, KeyState, Lease, UpstreamAnswer } from '../keys/pool.js';
import type { UsageCounter } from '../keys/ledger.js';
import type { WaitingRoom } from '../keys/waiting-room.js';
import type { Attempt, AttemptHead } from './attempt.js';
import { decodeBody } from './body-text.js';
import { clientResponseHeaders } from './headers.js';
import type { Circuit } from './circuit.js';
import { abortSignalOf, type Cancellation } from './request-signal.js';
import { errorInStream, isContextLengthExceeded } from './provider-signals.js';
import { firstDataEvent, isEventStream } from './sse.js';
import { describeNetworkError, giveUp, isLocalDispatchFailure, queueFull, replayRefused, type Failure } from './give-up.js';
import { decide, retryDelayMs, type Decision, type Penalty, type PolicySettings } from './retry-policy.js';

/** Why a request's signal was aborted. */
export type AbortWhy = 'client_closed' | 'deadline' | 'shutdown';
export class RequestAborted extends Error {
  constructor(readonly why: AbortWhy) {
    super(why === 'deadline' ? 'request deadline passed' : why === 'shutdown' ? 'keypool is shutting down' : 'client closed the connection');
  }
}

/** Keys asked about a refusal nobody can explain before the client gets it (the first, and one more). */
const UNEXPLAINED_OPINIONS = 2;

/** Most of a stream read ahead for its first event (commit on content). */
const PEEK_LIMIT = 64 * 1024;

/** Largest part of an error body keypool reads to decide (e.g. find `insufficient_quota`). */
export const SNIPPET_LIMIT = 64 * 1024;
/** How long keypool waits for an error body before deciding on status and headers alone. */
export const SNIPPET_TIMEOUT_MS = 1_000;

export interface RotateDeps {
  readonly pool: KeyPool;
  readonly room: WaitingRoom;
  readonly clock: Clock;
  readonly random: () => number;
  readonly retry: Config['retry'];
  readonly policy: PolicySettings;
  /** Removes anything secret from upstream text before it is shown to a client. */
  readonly scrub: (text: string) => string;
  /** The upstream's circuit breaker, if it has one: told of server faults and answers. */
  readonly circuit?: Circuit | undefined;
}

/** A request's retry budget, shared by every target of its chain. */
export interface RequestBudget {
  charged: number;
  waitedMs: number;
}

export interface RotateRequest {
  /** Aborted with a RequestAborted reason when the client leaves or the deadline passes. */
  readonly signal: Cancellation;
  /** Epoch ms by which the request must be done. */
  readonly deadline: number;
  readonly method: string;
  /** Starts one attempt with this lease's key. */
  readonly send: (lease: Lease) => Attempt;
  /** What the request needs from a key (model, token estimate). */
  readonly demand: Demand;
  /** Who is asking, for fair queueing. */
  readonly client: string;
  /** Sticky session id, if sticky sessions are on and the request has one. */
  readonly session?: string | undefined;
  /** Called each time the request starts waiting for a key (stream keep-alive hooks in here). */
  readonly onWait?: () => void;
  /** The request streams (its head comes before its first token). */
  readonly stream?: boolean;
  /**
   * What the whole request may spend, shared across every upstream of its chain: charged attempts
   * (walking the chain, like walking a pool, is free) and time waited for a cooling key (retry.maxWaitMs
   * bounds the request, not each target). Absent: this loop's own.
   */
  readonly budget?: RequestBudget;
  /**
   * Another target follows in the request's chain: once every key here has been tried and the last one
   * failed to answer (a server fault, a connection error, a timeout), leave for it instead of spending
   * the budget on an upstream that looks down. A cooling pool is still waited for (up to maxWaitMs).
   */
  readonly leaveOnFault?: boolean;
  /** Look into 400s for "context length exceeded": the request has somewhere to go with it. */
  readonly rerouteContextLength?: boolean;
  /** A stream on an upstream that may put errors in its first event: read that far (at most this long) before delivering. */
  readonly commitOnContentMs?: number | undefined;
}

/** One attempt, as the request's log line and metrics tell it: which key, and why the request left it. */
export interface TrailStep {
  /** The upstream the attempt went to (a chain may walk several). */
  readonly upstream: string;
  readonly key: string;
  /** What the attempt came to: a status, or a failure phase ('connect', 'sent', 'timeout'...). */
  readonly result: string;
  /** What keypool did next: 'deliver', 'rotate', 'retry', 'fail'. */
  readonly then: string;
}

interface Tally {
  readonly attempts: number;
  /** Charged attempts (units of retry.maxRetries spent). */
  readonly retries: number;
  /** Time spent waiting for a key (the waiting room), in ms. */
  readonly waitedMs: number;
  /** Time from each attempt's send to its answer's head (or failure), summed, in ms. */
  readonly upstreamMs: number;
  /** The key of the last attempt, if any. */
  readonly key: KeyState | undefined;
  readonly trail: readonly TrailStep[];
}

type OutcomeBody =
  /** Hand this response to the client; its body is not read yet. The caller ends the lease. */
  | {
      readonly kind: 'deliver';
      readonly attempt: Attempt;
      readonly status: number;
      readonly headers: Record<string, string | string[] | undefined>;
      readonly lease: Lease;
    }
  /**
   * An upstream answer already read in full (its lease is over): give it to the client as it is, or, when
   * `next` says so, to the next step of the request's chain (every key refused the model; the prompt is
   * too long for it).
   */
  | { readonly kind: 'answer'; readonly answer: UpstreamAnswer; readonly next: 'model_refused' | 'context_length' | undefined }
  /** `next`: this upstream cannot serve the request, another may (a chain goes on); false: the request is over. */
  | { readonly kind: 'error'; readonly error: KeypoolError; readonly next: boolean }
  /** The client left: nothing to answer. */
  | { readonly kind: 'aborted' };

export type RotateOutcome = Tally & OutcomeBody;

export function rotate(deps: RotateDeps, req: RotateRequest): Promise<RotateOutcome> {
  return new AttemptLoop(deps, req).run();
}

/** What one attempt left the loop to do. */
type Next = { readonly kind: 'again'; readonly charge: boolean } | { readonly kind: 'stop'; readonly outcome: RotateOutcome };

/** Failure statuses whose body says what happens next, read at most SNIPPET_LIMIT. */
class AttemptLoop {
  readonly #deps: RotateDeps;
  readonly #req: RotateRequest;
  /** Keys that failed this request (allocated on the first failure: most requests never need it). */
  #tried: Set<KeyState> | undefined;
  /**
   * Keys whose answer was about the request or model (a 403/404 refusal): no charged attempt goes back
   * to them either, since they would say the same again. A subset of `#tried`.
   */
  #barred: Set<KeyState> | undefined;
  #failedGroups: Set<string> | undefined;
  #attempts = 0;
  readonly #budget: RequestBudget;
  #waited = 0;
  #last: Failure | undefined;
  #key: KeyState | undefined;
  #upstreamMs = 0;
  /** Refusals no rule explains, so far (see UNEXPLAINED_OPINIONS). */
  #unexplained = 0;
  readonly #trail: TrailStep[] = [];
  /** This request holds its upstream's half-open probe and has not reported on it yet. */
  #probing = false;

  constructor(deps: RotateDeps, req: RotateRequest) {
    this.#deps = deps;
    this.#req = req;
    this.#budget = req.budget ?? { charged: 0, waitedMs: 0 };
  }

  async run(): Promise<RotateOutcome> {
    try {
      return await this.#run();
    } finally {
      // A probe that ends unreported (no key to send it with, the client left, the deadline, shutdown)
      // lets the next request probe instead of holding the circuit for the probe's lease.
      if (this.#probing) this.#deps.circuit?.releaseProbe();
    }
  }

  async #run(): Promise<RotateOutcome> {
    const { pool, retry } = this.#deps;
    // Bounded: each pass makes an attempt or ends the loop; free attempts are at most one per key.
    const maxPasses = pool.size + retry.maxRetries + 1;
    let charge = false;
    for (let pass = 0; pass < maxPasses; pass++) {
      if (this.#req.signal.aborted) return this.#stopped();
      // Before every attempt, free ones too: a circuit opened meanwhile (by this request's faults or
      // others') sends the request on to its next target instead of another try at a failing upstream.
      if (!this.#admitted()) return this.#circuitOpen();
      const got = charge ? await this.#chargedLease() : await this.#freeLease();
      if ('kind' in got) return got;
      const next = await this.#attempt(got);
      if (next.kind === 'stop') return next.outcome;
      charge = next.charge;
    }
    return this.#giveUp();
  }

  // --- getting a key ---

  /** A free attempt if an untried key can go now; else the charged path. */
  async #freeLease(): Promise<Lease | RotateOutcome> {
    const { room } = this.#deps;
    if (this.#attempts === 0 && room.size > 0) {
      const limit = this.#waitBudget();
      if (limit > 0) {
        // Others are already waiting: queue behind them (fairly) instead of taking a key that frees up in
        // front of them. Free of budget: this request has not failed anything yet.
        const got = await this.#waitInRoom(() => this.#take(() => this.#local(this.#tried)), limit);
        if (got !== undefined) return got;
      }
    }
    const lease = await this.#take(() => this.#local(this.#tried));
    return lease ?? this.#chargedLease();
  }

  /** An attempt that costs one unit: after the request's backoff, with any key, waiting for one if it comes back in time. */
  async #chargedLease(): Promise<Lease | RotateOutcome> {
    const { pool, clock, retry, random } = this.#deps;
    if (pool.usable === 0 || this.#budget.charged >= retry.maxRetries) return this.#giveUp();
    const last = this.#last?.kind;
    if (this.#req.leaveOnFault === true && (last === 'server' || last === 'network' || last === 'timeout')) return this.#giveUp();
    // The backoff is a floor, not an addition: when the earliest key is back later than it, waiting for
    // that key is the pacing; only a key back sooner (a 5xx, a connection error: it is free now) waits it out.
    const now = clock.now();
    const delay = retryDelayMs(this.#budget.charged + 1, random(), retry.backoffBaseMs, retry.backoffMaxMs);
    if (now + delay >= this.#req.deadline) return this.#giveUp();
    const next = pool.nextAvailableAt(this.#req.demand, now);
    if (delay > 0 && next !== undefined && next < now + delay) {
      try {
        await clock.sleep(delay, abortSignalOf(this.#req.signal));
      } catch {
        return this.#stopped();
      }
    }
    const any = (): Lease | undefined => this.#local(this.#tried) ?? this.#local(this.#barred);
    let lease = await this.#take(any);
    if (lease === undefined) {
      // Fail fast, with Retry-After, when the earliest key is known to come back too late.
      const limit = this.#waitBudget();
      if (limit === 0) return this.#giveUp();
      const got = await this.#waitInRoom(() => this.#take(any), limit);
      if (got === undefined) return this.#giveUp();
      if ('kind' in got) return got;
      lease = got;
    }
    this.#budget.charged++;
    return lease;
  }

  #local(exclude: ReadonlySet<KeyState> | undefined): Lease | undefined {
    const { pool, clock } = this.#deps;
    return pool.acquire({ demand: this.#req.demand, now: clock.now(), exclude, avoidGroups: this.#failedGroups, session: this.#req.session });
  }

  /**
   * With a shared store the store confirms each local choice; a refusal holds that key back and the pool
   * chooses again (bounded: each refusal holds another key). Without one, nothing to await.
   */
  #take(pick: () => Lease | undefined): Lease | undefined | Promise<Lease | undefined> {
    const { pool, clock } = this.#deps;
    if (!pool.shared) return pick();
    return (async () => {
      for (let i = 0; i <= pool.size; i++) {
        const lease = pick();
        if (lease === undefined) return undefined;
        const ok = await pool.confirm(lease, clock.now());
        // The client may have left (or the deadline passed) while the store answered: nothing is sent for nobody.
        if (ok && this.#req.signal.aborted) {
          lease.abandon();
          return undefined;
        }
        if (ok) return lease;
      }
      return undefined;
    })();
  }

  /** How long this request may still wait for a key; 0 when it may not, or when no key comes back in time. */
  #waitBudget(): number {
    const { pool, clock, retry } = this.#deps;
    const now = clock.now();
    const limit = Math.min(retry.maxWaitMs - this.#budget.waitedMs, this.#req.deadline - now);
    const next = pool.nextAvailableAt(this.#req.demand, now);
    // An event-bound wait (a free in-flight slot) has no known time, so it may wait up to the limit.
    if (next === undefined || limit <= 0 || (Number.isFinite(next) && next - now > limit)) return 0;
    return limit;
  }

  /** Waits in the room for a key: the lease, undefined on timeout, or the outcome that ends the request. */
  async #waitInRoom(tryAcquire: () => Lease | undefined | Promise<Lease | undefined>, limit: number): Promise<Lease | RotateOutcome | undefined> {
    const { room, clock } = this.#deps;
    const t0 = clock.now();
    this.#req.onWait?.();
    try {
      const result = await room.wait({
        client: this.#req.client,
        demand: this.#req.demand,
        maxWaitMs: limit,
        signal: abortSignalOf(this.#req.signal),
        tryAcquire,
        giveBack: (l) => l.abandon(),
      });
      if (result.kind === 'acquired') return result.lease;
      if (result.kind === 'full') return this.#outcome({ kind: 'error', error: queueFull(this.#deps, this.#req.demand), next: true });
      if (result.kind === 'no_keys') return this.#giveUp();
      return undefined;
    } catch {
      return this.#stopped();
    } finally {
      const waited = clock.now() - t0;
      this.#waited += waited;
      this.#budget.waitedMs += waited;
    }
  }

  // --- one attempt ---

  async #attempt(lease: Lease): Promise<Next> {
    const { pool, clock } = this.#deps;
    this.#attempts++;
    this.#key = lease.state;
    const sent = performance.now();
    const attempt = this.#req.send(lease);
    const head = await attempt.head;
    this.#upstreamMs += performance.now() - sent;
    if (this.#req.signal.aborted) {
      attempt.cancel(new Error('request over'));
      lease.end(undefined);
      return this.#stop(this.#stopped());
    }
    if (head.kind === 'head') pool.observe(lease, head.headers, clock.now());
    let decision = this.#judge(lease, head, undefined);
    let bodyText: string | undefined;
    let applied: Penalty | undefined;
    if (decision.kind === 'read-body' && head.kind === 'head') {
      // A 429 cools its key now, at the head, so concurrent requests stop choosing it at once.
      this.#penalise(lease, decision.provisional);
      applied = decision.provisional;
      bodyText = await this.#readBody(attempt, head);
      if (this.#req.signal.aborted) {
        lease.end(undefined);
        return this.#stop(this.#stopped());
      }
      decision = this.#judge(lease, head, bodyText);
    }
    const commitMs = this.#req.commitOnContentMs;
    if (decision.kind === 'deliver' && commitMs !== undefined && head.kind === 'head' && head.status < 300 && isEventStream(head.headers['content-type'])) {
      // Some providers answer 200 and put the failure in the first event: look before anything is committed.
      const inStream = await this.#firstEventError(attempt, commitMs);
      if (this.#req.signal.aborted) {
        attempt.cancel(new Error('request over'));
        lease.end(undefined);
        return this.#stop(this.#stopped());
      }
      if (inStream !== undefined) {
        const as: AttemptHead = { kind: 'head', status: inStream.status, headers: head.headers };
        const judged = this.#judge(lease, as, inStream.body);
        // A failure nobody would retry is delivered as it came (the stream, its error event first).
        if (judged.kind !== 'deliver') {
          attempt.cancel(new Error('error inside a 200 stream'));
          return this.#carryOut(lease, attempt, as, judged, inStream.body, applied);
        }
      }
    }
    return this.#carryOut(lease, attempt, head, decision, bodyText, applied);
  }

  /** Reads ahead to the stream's first data event (at most `ms`): the failure it carries, if it is one. */
  async #firstEventError(attempt: Attempt, ms: number): Promise<{ status: number; body: string } | undefined> {
    const cancel = this.#deps.clock.timer(ms, () => attempt.stopPeek());
    try {
      const seen = await attempt.peek(PEEK_LIMIT, (bytes) => firstDataEvent(bytes.toString('utf8')) !== undefined);
      const first = firstDataEvent(seen.toString('utf8'));
      return first === undefined ? undefined : errorInStream(first);
    } finally {
      cancel();
    }
  }

  #judge(lease: Lease, head: AttemptHead, body: string | undefined): Decision {
    const { pool, clock, random, retry, policy } = this.#deps;
    return decide({
      method: this.#req.method,
      // An endpoint scope ("path:...") names no model: a model-shaped refusal is then the request's.
      model: this.#req.demand.model.startsWith('path:') ? '' : this.#req.demand.model,
      stream: this.#req.stream === true,
      readBadRequests: this.#req.rerouteContextLength === true,
      result: head.kind === 'failed' ? { kind: 'failed', phase: head.phase, timedOut: head.timedOut } : { kind: 'answered', status: head.status, headers: head.headers, body },
      context: Object.freeze({ attempts: this.#attempts, retriesLeft: retry.maxRetries - this.#budget.charged }),
      now: clock.now(),
      streak: pool.streakOf(lease.state, this.#req.demand.model) + 1,
      random: random(),
      settings: policy,
    });
  }

  async #carryOut(lease: Lease, attempt: Attempt, head: AttemptHead, d: Decision, bodyText: string | undefined, applied: Penalty | undefined): Promise<Next> {
    const { pool } = this.#deps;
    const state = lease.state;
    // The circuit hears every attempt: a failure to answer or a server fault counts against the upstream,
    // any other answer (a 429 included: the upstream is up) closes a half-open circuit.
    const circuit = this.#deps.circuit;
    this.#probing = false;
    if (circuit !== undefined && !(head.kind === 'failed' && isLocalDispatchFailure(head.error))) {
      const now = this.#deps.clock.now();
      const serverFault = head.kind === 'failed' || ((d.kind === 'retry' || d.kind === 'fail') && d.cause === 'server');
      if (serverFault) circuit.fault(now);
      else circuit.success(now);
    }
    this.#trail.push({
      upstream: this.#deps.pool.upstream,
      key: state.key.name,
      result: head.kind === 'head' ? String(head.status) : head.timedOut ? 'headers_timeout' : head.phase,
      then: d.kind === 'fail' ? d.why : d.kind,
    });
    if (d.kind === 'read-body') throw new Error('policy asked for a body twice'); // a keypool bug
    if (head.kind === 'failed') {
      lease.end(undefined);
      const reason = describeNetworkError(head.error);
      if (d.kind === 'fail' && d.why === 'replay_refused') {
        const error = head.timedOut
          ? new KeypoolError(
              'keypool_upstream_timeout',
              `Upstream ${this.#deps.pool.upstream} sent no response head within retry.headersTimeoutMs (${this.#deps.retry.headersTimeoutMs} ms); ` +
                `a non-streaming ${this.#req.method} may still be running there, so it was not sent again (retry.replayAfterSend is off).`,
              { headers: { 'x-should-retry': 'false' } },
            )
          : replayRefused(this.#deps, this.#req.method, reason);
        // Not to a fallback either: the request may be running upstream.
        return this.#stop(this.#outcome({ kind: 'error', error, next: false }));
      }
      this.#last = head.timedOut ? { kind: 'timeout' } : { kind: 'network', reason };
      return d.kind === 'retry' ? { kind: 'again', charge: true } : this.#stop(this.#giveUp());
    }
    if (d.kind === 'deliver') {
      this.#penalise(lease, d.penalty, applied);
      if (bodyText !== undefined) {
        // The body was read to decide: what is left to deliver is what was read.
        lease.end(head.status < 300 ? 'successes' : undefined);
        const tooLong = this.#req.rerouteContextLength === true && head.status === 400 && isContextLengthExceeded(bodyText);
        return this.#stop(this.#outcome({ kind: 'answer', answer: answerOf(head, bodyText, this.#deps.scrub), next: tooLong ? 'context_length' : undefined }));
      }
      // At the head, not the end of the stream: a good answer opens a probed key to everyone at once.
      lease.answered(head.status < 300);
      if (head.status < 300) pool.succeeded(state, this.#req.demand.model);
      // The common end of a request, written out in full: a spread of differently shaped bodies is slow.
      const delivered: RotateOutcome = {
        kind: 'deliver',
        attempt,
        status: head.status,
        headers: head.headers,
        lease,
        attempts: this.#attempts,
        retries: this.#budget.charged,
        waitedMs: this.#waited,
        upstreamMs: this.#upstreamMs,
        key: this.#key,
        trail: this.#trail,
      };
      return { kind: 'stop', outcome: delivered };
    }
    // Not delivered: keep what the upstream said, for the client's error if the request runs out.
    bodyText ??= await this.#readBody(attempt, head);
    switch (d.kind) {
      case 'rotate':
        this.#penalise(lease, d.penalty, applied);
        (this.#tried ??= new Set()).add(state);
        if (d.cause === 'answer') (this.#barred ??= new Set()).add(state);
        if (d.penalty.kind === 'cool' && d.penalty.reason !== 'model_unavailable' && state.key.options.group !== undefined) {
          (this.#failedGroups ??= new Set()).add(state.key.options.group);
        }
        if (d.cause === 'answer') {
          const answer = answerOf(head, bodyText, this.#deps.scrub);
          this.#last = { kind: 'answer', answer, modelRefusal: d.penalty.kind === 'cool' };
          if (d.penalty.kind === 'cool') pool.rememberAnswer(this.#req.demand.model, answer);
        } else {
          this.#last = { kind: d.cause === 'auth' ? 'auth' : 'limit', status: head.status, body: bodyText };
        }
        lease.end(usageOf(d.penalty));
        // An answer no key did better on: once every key has given it, the client gets it, not a retry. A
        // refusal nobody can explain (a WAF page, a permission the key may lack) gets one second opinion
        // from another key; if that one says the same, it is the request's, and walking on would only
        // multiply it.
        if (d.cause === 'answer' && d.penalty.kind === 'none' && ++this.#unexplained >= UNEXPLAINED_OPINIONS) return this.#stop(this.#giveUp());
        if (d.cause === 'answer' && this.#untriedLeft() === false) return this.#stop(this.#giveUp());
        return { kind: 'again', charge: false };
      case 'retry':
        pool.serverError(state);
        lease.end('serverErrors');
        this.#last = { kind: 'server', status: head.status, body: bodyText };
        return { kind: 'again', charge: true };
      case 'fail':
        pool.serverError(state);
        lease.end('serverErrors');
        this.#last = { kind: 'server', status: head.status, body: bodyText };
        return this.#stop(this.#giveUp());
    }
  }

  /** Whether a key this request has not tried could still be chosen, now or later. */
  #untriedLeft(): boolean {
    const { pool } = this.#deps;
    const tried = this.#tried;
    return pool.states().some((s) => s.disabled === undefined && tried?.has(s) !== true);
  }

  async #readBody(attempt: Attempt, head: Extract<AttemptHead, { kind: 'head' }>): Promise<string> {
    const { clock } = this.#deps;
    // Bounded: a stalled or endless error body cannot hold rotation up.
    const cancel = clock.timer(SNIPPET_TIMEOUT_MS, () => attempt.cancel(new Error('error body too slow')));
    try {
      const raw = await attempt.snippet(SNIPPET_LIMIT);
      return decodeBody(raw, head.headers['content-encoding'], SNIPPET_LIMIT);
    } finally {
      cancel();
    }
  }

  #penalise(lease: Lease, p: Penalty, alreadyApplied?: Penalty): void {
    const { pool, clock } = this.#deps;
    if (alreadyApplied !== undefined && samePenalty(p, alreadyApplied)) return;
    const now = clock.now();
    const refining = alreadyApplied?.kind === 'cool' && p.kind === 'cool' && alreadyApplied.reason === p.reason && alreadyApplied.scope === p.scope;
    if (p.kind === 'cool') pool.cool(lease.state, p.scope === 'key' ? '' : this.#req.demand.model, p.until, p.reason, now, refining);
    else if (p.kind === 'disable') pool.disable(lease.state, p.reason, p.until);
  }

  // --- endings ---

  #stop(outcome: RotateOutcome): Next {
    return { kind: 'stop', outcome };
  }

  #outcome(o: OutcomeBody): RotateOutcome {
    return { ...o, attempts: this.#attempts, retries: this.#budget.charged, waitedMs: this.#waited, upstreamMs: this.#upstreamMs, key: this.#key, trail: this.#trail };
  }

  /** Whether the circuit lets this request's next attempt through (half-open: this request becomes the probe). */
  #admitted(): boolean {
    const circuit = this.#deps.circuit;
    if (circuit === undefined) return true;
    const now = this.#deps.clock.now();
    const halfOpen = circuit.state(now) === 'half-open';
    if (!circuit.admit(now)) return false;
    if (halfOpen) this.#probing = true;
    return true;
  }

  #stopped(): RotateOutcome {
    const signal = this.#req.signal;
    const why = signal.reason instanceof RequestAborted ? signal.reason.why : 'client_closed';
    if (why === 'shutdown') {
      // An attempt that went out may be running (and billed) upstream: the client must not send it again.
      const headers = this.#attempts > 0 ? { 'x-should-retry': 'false' } : undefined;
      const message =
        this.#attempts > 0
          ? 'keypool is shutting down; the upstream may have the request already, so it should not be sent again.'
          : 'keypool is shutting down; retry on another replica or shortly.';
      return this.#outcome({ kind: 'error', error: new KeypoolError('keypool_shutting_down', message, headers === undefined ? {} : { headers }), next: false });
    }
    if (why === 'deadline') {
      const error = new KeypoolError('keypool_upstream_timeout', `No answer within the request deadline (${this.#deps.retry.timeoutMs} ms).`, {
        headers: { 'x-should-retry': 'false' },
      });
      return this.#outcome({ kind: 'error', error, next: false });
    }
    return this.#outcome({ kind: 'aborted' });
  }

  #giveUp(): RotateOutcome {
    const g = giveUp(this.#deps, this.#req.demand, this.#last, this.#budget.charged);
    if (g.kind === 'answer') return this.#outcome({ kind: 'answer', answer: g.answer, next: g.modelRefused ? 'model_refused' : undefined });
    return this.#outcome({ kind: 'error', error: g.error, next: true });
  }

  #circuitOpen(): RotateOutcome {
    const { clock, pool, circuit } = this.#deps;
    const waitMs = Math.max(1_000, (circuit?.openUntil ?? 0) - clock.now());
    const error = new KeypoolError('keypool_circuit_open', `Upstream ${pool.upstream} failed too often lately (its circuit is open); retry in ${Math.ceil(waitMs / 1000)}s.`, {
      headers: { 'retry-after': String(Math.ceil(waitMs / 1000)), 'retry-after-ms': String(Math.ceil(waitMs)), ...(waitMs >= 60_000 ? { 'x-should-retry': 'false' } : {}) },
    });
    return this.#outcome({ kind: 'error', error, next: true });
  }
}

function samePenalty(a: Penalty, b: Penalty): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'cool' && b.kind === 'cool') return a.reason === b.reason && a.scope === b.scope && a.until === b.until;
  return a.kind === 'none';
}

/** The usage counter a failed attempt adds to (shared usage mirrors the pool's own stats). */
function usageOf(p: Penalty): UsageCounter | undefined {
  if (p.kind !== 'cool') return undefined;
  return p.reason === 'rate_limited' ? 'rateLimited' : p.reason === 'out_of_credit' ? 'outOfCredit' : undefined;
}

/**
 * An answer whose body was read (and decoded): its headers without the ones that described the raw bytes,
 * its text scrubbed of secrets (a gateway may quote the credential it refused).
 */
function answerOf(head: Extract<AttemptHead, { kind: 'head' }>, body: string, scrub: (t: string) => string): UpstreamAnswer {
  const headers = clientResponseHeaders(head.headers) as Record<string, string | string[]>;
  delete headers['content-length'];
  delete headers['content-encoding'];
  return { status: head.status, headers, body: scrub(body) };
}
