// The attempt loop: takes a key per attempt, sends, and carries out what the retry policy decides
// (retry-policy.ts). Walking the pool is free; the budget counts only attempts once every key is tried
// or cooling, and after faults that were not a key's (5xx, connection errors, timeouts):
//  1. An attempt with an untried key that is available now costs nothing.
//  2. Otherwise an attempt costs one unit of retry.maxRetries, after the request's own backoff and
//     after waiting for a key if one comes back within retry.maxWaitMs and the deadline.
// So N keys that all answer 429 see exactly N + maxRetries attempts.
// Every lease taken is ended exactly once, whatever happens (attempt over, refused, client gone).
import type { KeyState, Lease, UpstreamAnswer } from '../keys/pool.js';
import type { UsageCounter } from '../keys/ledger.js';
import type { Attempt, AttemptHead } from './attempt.js';
import { answerOf, decodeBody } from './body-text.js';
import { errorInStream, isContextLengthExceeded } from './provider-signals.js';
import { firstDataEvent, isEventStream } from './sse.js';
import { circuitOpenError, describeNetworkError, giveUp, headersTimeoutRefused, isLocalDispatchFailure, queueFull, replayRefused, stoppedError, type Failure } from './give-up.js';
import { LeaseFinder } from './lease-finder.js';
import { decide, samePenalty, usageOf, type Decision, type Penalty } from './retry-policy.js';
import { RequestAborted, SNIPPET_LIMIT, SNIPPET_TIMEOUT_MS, type OutcomeBody, type RequestBudget, type RotateDeps, type RotateOutcome, type RotateRequest, type TrailStep } from './rotate-types.js';

// The loop's types live in rotate-types.ts; importers of rotate.js get them here too.
export { RequestAborted, SNIPPET_LIMIT, SNIPPET_TIMEOUT_MS } from './rotate-types.js';
export type { AbortWhy, OutcomeBody, RequestBudget, RotateDeps, RotateOutcome, RotateRequest, Tally, TrailStep } from './rotate-types.js';

/** Keys asked about a refusal nobody can explain before the client gets it (the first, and one more). */
const UNEXPLAINED_OPINIONS = 2;

/** Most of a stream read ahead for its first event (commit on content). */
const PEEK_LIMIT = 64 * 1024;

export function rotate(deps: RotateDeps, req: RotateRequest): Promise<RotateOutcome> {
  return new AttemptLoop(deps, req).run();
}

/** What one attempt left the loop to do. */
type Next = { readonly kind: 'again'; readonly charge: boolean } | { readonly kind: 'stop'; readonly outcome: RotateOutcome };

/** One request's attempts on one upstream: a key each, sent, and the policy's decision carried out. */
class AttemptLoop {
  readonly #deps: RotateDeps;
  readonly #req: RotateRequest;
  #attempts = 0;
  readonly #budget: RequestBudget;
  readonly #finder: LeaseFinder;
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
    this.#finder = new LeaseFinder(deps, req, this.#budget);
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
      const got = await this.#lease(charge);
      if ('kind' in got) return got;
      const next = await this.#attempt(got);
      if (next.kind === 'stop') return next.outcome;
      charge = next.charge;
    }
    return this.#giveUp();
  }

  /** The next key, or the outcome that ends the request instead. */
  async #lease(charge: boolean): Promise<Lease | RotateOutcome> {
    const last = this.#last?.kind;
    // Another target follows and this upstream failed to answer after its walk: leave rather than spend on it.
    const leaveNow = this.#req.leaveOnFault === true && (last === 'server' || last === 'network' || last === 'timeout');
    const got = charge ? await this.#finder.charged(leaveNow) : await this.#finder.free(this.#attempts === 0, leaveNow);
    if (!('kind' in got)) return got;
    if (got.kind === 'stopped') return this.#stopped();
    if (got.kind === 'full') return this.#outcome({ kind: 'error', error: queueFull(this.#deps, this.#req.demand), next: true });
    return this.#giveUp();
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
        const error = head.timedOut ? headersTimeoutRefused(this.#deps, this.#req.method) : replayRefused(this.#deps, this.#req.method, reason);
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
        waitedMs: this.#finder.waitedMs,
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
        // A group (one Azure resource, one provider account) cooling for a rate limit is avoided as a whole.
        this.#finder.failed(state, d.cause === 'answer', d.penalty.kind === 'cool' && d.penalty.reason !== 'model_unavailable' ? state.key.options.group : undefined);
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
    const tried = this.#finder.tried;
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
    return { ...o, attempts: this.#attempts, retries: this.#budget.charged, waitedMs: this.#finder.waitedMs, upstreamMs: this.#upstreamMs, key: this.#key, trail: this.#trail };
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
    const error = stoppedError(why, this.#attempts > 0, this.#deps.retry.timeoutMs);
    return this.#outcome(error === undefined ? { kind: 'aborted' } : { kind: 'error', error, next: false });
  }

  #giveUp(): RotateOutcome {
    const g = giveUp(this.#deps, this.#req.demand, this.#last, this.#budget.charged);
    if (g.kind === 'answer') return this.#outcome({ kind: 'answer', answer: g.answer, next: g.modelRefused ? 'model_refused' : undefined });
    return this.#outcome({ kind: 'error', error: g.error, next: true });
  }

  #circuitOpen(): RotateOutcome {
    const { clock, pool, circuit } = this.#deps;
    return this.#outcome({ kind: 'error', error: circuitOpenError(pool.upstream, (circuit?.openUntil ?? 0) - clock.now()), next: true });
  }
}
