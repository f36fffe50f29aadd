// Key rotation for a WebSocket handshake, before the client's own handshake is answered: one upstream
// handshake per key, each answer judged by the one retry policy (retry-policy.ts) and its penalty applied
// to the pool at once (cool on 429, disable on 401 or a 403 naming the key), like the HTTP attempt loop.
// The walk over untried keys is free; a 5xx, a failed connection or a timeout costs one unit of
// retry.maxRetries after the backoff. There is no waiting room: a client's handshake is not held while
// keys cool, it gets the status (429 + Retry-After) at once and can fall back to HTTP.
// Rotation ends at the 101: a session is never moved to another key. Every lease is ended exactly once.
import type { IncomingHttpHeaders } from 'node:http';
import type WebSocket from 'ws';
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import type { KeypoolError } from '../errors.js';
import type { Demand, KeyPool, KeyState, Lease, UpstreamAnswer } from '../keys/pool.js';
import type { Scrubber } from '../keys/scrub.js';
import { describeNetworkError, giveUp, type Failure } from './give-up.js';
import { setKey } from './headers.js';
import { decide, retryDelayMs, samePenalty, usageOf, type AttemptResult, type Decision, type Penalty, type PolicySettings } from './retry-policy.js';
import type { TrailStep } from './rotate.js';
import { UpstreamHandshake, type HandshakeResult } from './websocket-handshake.js';
import { answerOf, readText, type Answered } from './websocket-upstream-answer.js';

/** Keys asked about a refusal nobody can explain before the client gets it (as in rotate.ts). */
const UNEXPLAINED_OPINIONS = 2;

export interface ConnectDeps {
  readonly pool: KeyPool;
  readonly clock: Clock;
  readonly random: () => number;
  readonly retry: Config['retry'];
  readonly policy: PolicySettings;
  /** Removes secrets from upstream text before the client sees it. */
  readonly scrub: Scrubber;
  readonly handshakeTimeoutMs: number;
  readonly maxMessageBytes: number;
}

export interface ConnectRequest {
  /** The upstream endpoint (http(s) or ws(s)), query included. */
  readonly url: string;
  /** The client's headers as the upstream gets them, without a key; copied per attempt. */
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly authHeader: string;
  readonly protocols: readonly string[];
  readonly demand: Demand;
  readonly session: string | undefined;
  /** Aborted when the client leaves (or keypool shuts down) during the handshake. */
  readonly signal: AbortSignal;
}

interface Tally {
  readonly attempts: number;
  readonly retries: number;
  /** Name of the last key tried. */
  readonly key: string | undefined;
  readonly trail: readonly TrailStep[];
}

export type ConnectOutcome = Tally &
  (
    /** The upstream session is open (paused); the caller owns `lease` and ends it when the session closes. */
    | { readonly kind: 'open'; readonly socket: WebSocket; readonly headers: IncomingHttpHeaders; readonly lease: Lease }
    /** An upstream answer no other key can do better on, read and scrubbed: the client gets it as it is. */
    | { readonly kind: 'answer'; readonly answer: UpstreamAnswer }
    | { readonly kind: 'error'; readonly error: KeypoolError }
    | { readonly kind: 'aborted' }
  );

export function connectUpstream(deps: ConnectDeps, req: ConnectRequest): Promise<ConnectOutcome> {
  return new HandshakeLoop(deps, req).run();
}

type Next = { readonly kind: 'again'; readonly charge: boolean } | { readonly kind: 'stop'; readonly outcome: ConnectOutcome };

class HandshakeLoop {
  readonly #deps: ConnectDeps;
  readonly #req: ConnectRequest;
  readonly #tried = new Set<KeyState>();
  /** Keys whose answer was about the request or model: not asked again on a charged attempt. */
  readonly #barred = new Set<KeyState>();
  readonly #trail: TrailStep[] = [];
  #attempts = 0;
  #retries = 0;
  #unexplained = 0;
  #key: string | undefined;
  #last: Failure | undefined;

  constructor(deps: ConnectDeps, req: ConnectRequest) {
    this.#deps = deps;
    this.#req = req;
  }

  async run(): Promise<ConnectOutcome> {
    const { pool, retry } = this.#deps;
    // Bounded: each pass makes one attempt or ends; free attempts are at most one per key.
    const maxPasses = pool.size + retry.maxRetries + 1;
    let charge = false;
    for (let pass = 0; pass < maxPasses; pass++) {
      if (this.#req.signal.aborted) return this.#outcome({ kind: 'aborted' });
      const got = charge ? await this.#chargedLease() : await this.#freeLease();
      if ('kind' in got) return got;
      const next = await this.#attempt(got);
      if (next.kind === 'stop') return next.outcome;
      charge = next.charge;
    }
    return this.#giveUp();
  }

  async #freeLease(): Promise<Lease | ConnectOutcome> {
    return (await this.#take(() => this.#acquire(this.#tried))) ?? this.#chargedLease();
  }

  async #chargedLease(): Promise<Lease | ConnectOutcome> {
    const { pool, clock, retry, random } = this.#deps;
    if (pool.usable === 0 || this.#retries >= retry.maxRetries) return this.#giveUp();
    const now = clock.now();
    const delay = retryDelayMs(this.#retries + 1, random(), retry.backoffBaseMs, retry.backoffMaxMs);
    const next = pool.nextAvailableAt(this.#req.demand, now);
    // No waiting room: only a key usable again within the backoff is worth the client's wait.
    if (next === undefined || next > now + delay) return this.#giveUp();
    if (delay > 0) {
      try {
        await clock.sleep(delay, this.#req.signal);
      } catch {
        return this.#outcome({ kind: 'aborted' });
      }
    }
    const lease = await this.#take(() => this.#acquire(this.#tried) ?? this.#acquire(this.#barred));
    if (lease === undefined) return this.#giveUp();
    this.#retries++;
    return lease;
  }

  #acquire(exclude: ReadonlySet<KeyState>): Lease | undefined {
    const { pool, clock } = this.#deps;
    return pool.acquire({ demand: this.#req.demand, now: clock.now(), exclude, session: this.#req.session });
  }

  /** With a shared store, the store confirms each local choice (a refusal holds that key back; bounded). */
  async #take(pick: () => Lease | undefined): Promise<Lease | undefined> {
    const { pool, clock } = this.#deps;
    if (!pool.shared) return pick();
    for (let i = 0; i <= pool.size; i++) {
      const lease = pick();
      if (lease === undefined) return undefined;
      if (await pool.confirm(lease, clock.now())) return lease;
    }
    return undefined;
  }

  async #attempt(lease: Lease): Promise<Next> {
    const { pool, clock, handshakeTimeoutMs, maxMessageBytes } = this.#deps;
    const { signal } = this.#req;
    this.#attempts++;
    this.#key = lease.state.key.name;
    const headers = { ...this.#req.headers };
    setKey(headers, this.#req.authHeader, lease.state.key.reveal());
    const hs = new UpstreamHandshake({ url: this.#req.url, headers, protocols: this.#req.protocols, timeoutMs: handshakeTimeoutMs, maxMessageBytes }, clock);
    const onAbort = (): void => hs.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const result = await hs.result;
      if (signal.aborted) {
        hs.cancel();
        lease.end(undefined);
        return this.#stop({ kind: 'aborted' });
      }
      if (result.kind === 'open') {
        pool.observe(lease, result.headers, clock.now());
        this.#trail.push({ upstream: this.#deps.pool.upstream, key: lease.state.key.name, result: '101', then: 'deliver' });
        // The handshake is the answer: a probe ends here, and the key is good.
        lease.answered(true);
        pool.succeeded(lease.state, this.#req.demand.model);
        return this.#stop({ kind: 'open', socket: result.socket, headers: result.headers, lease });
      }
      if (result.kind === 'failed') return this.#failed(lease, result);
      return await this.#answered(lease, result);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  #failed(lease: Lease, r: Extract<HandshakeResult, { kind: 'failed' }>): Next {
    const d = this.#judge(lease, { kind: 'failed', phase: r.phase, timedOut: r.timedOut });
    this.#trail.push({ upstream: this.#deps.pool.upstream, key: lease.state.key.name, result: r.timedOut ? 'handshake_timeout' : r.phase, then: d.kind === 'fail' ? d.why : d.kind });
    lease.end(undefined);
    this.#last = r.timedOut ? { kind: 'timeout' } : { kind: 'network', reason: describeNetworkError(r.error) };
    return d.kind === 'retry' ? { kind: 'again', charge: true } : this.#stop(this.#giveUp());
  }

  async #answered(lease: Lease, r: Answered): Promise<Next> {
    const { pool, clock } = this.#deps;
    pool.observe(lease, r.headers, clock.now());
    let d = this.#judge(lease, { kind: 'answered', status: r.status, headers: r.headers, body: undefined });
    let body: string | undefined;
    let applied: Penalty | undefined;
    if (d.kind === 'read-body') {
      // A 429 cools its key now, so concurrent requests stop choosing it while the body is read.
      this.#penalise(lease, d.provisional);
      applied = d.provisional;
      body = await readText(r);
      if (this.#req.signal.aborted) {
        lease.end(undefined);
        return this.#stop({ kind: 'aborted' });
      }
      d = this.#judge(lease, { kind: 'answered', status: r.status, headers: r.headers, body });
    }
    const state = lease.state;
    this.#trail.push({ upstream: this.#deps.pool.upstream, key: state.key.name, result: String(r.status), then: d.kind === 'fail' ? d.why : d.kind });
    if (d.kind === 'read-body') throw new Error('policy asked for a body twice'); // a keypool bug
    body ??= await readText(r);
    switch (d.kind) {
      case 'deliver':
        this.#penalise(lease, d.penalty, applied);
        lease.end(r.status < 300 ? 'successes' : undefined);
        return this.#stop({ kind: 'answer', answer: this.#answerOf(r, body) });
      case 'rotate': {
        this.#penalise(lease, d.penalty, applied);
        this.#tried.add(state);
        if (d.cause === 'answer') {
          this.#barred.add(state);
          const answer = this.#answerOf(r, body);
          this.#last = { kind: 'answer', answer, modelRefusal: d.penalty.kind === 'cool' };
          if (d.penalty.kind === 'cool') pool.rememberAnswer(this.#req.demand.model, answer);
        } else {
          this.#last = { kind: d.cause === 'auth' ? 'auth' : 'limit', status: r.status, body };
        }
        lease.end(usageOf(d.penalty));
        if (d.cause === 'answer' && d.penalty.kind === 'none' && ++this.#unexplained >= UNEXPLAINED_OPINIONS) return this.#stop(this.#giveUp());
        if (d.cause === 'answer' && !this.#untriedLeft()) return this.#stop(this.#giveUp());
        return { kind: 'again', charge: false };
      }
      case 'retry':
      case 'fail':
        pool.serverError(state);
        lease.end('serverErrors');
        this.#last = { kind: 'server', status: r.status, body };
        return d.kind === 'retry' ? { kind: 'again', charge: true } : this.#stop(this.#giveUp());
    }
  }

  #judge(lease: Lease, result: AttemptResult): Decision {
    const { pool, clock, random, retry, policy } = this.#deps;
    return decide({
      // A handshake is a GET without a body: sending it again is always safe.
      method: 'GET',
      model: this.#req.demand.model,
      stream: false,
      result,
      context: Object.freeze({ attempts: this.#attempts, retriesLeft: retry.maxRetries - this.#retries }),
      now: clock.now(),
      streak: pool.streakOf(lease.state, this.#req.demand.model) + 1,
      random: random(),
      settings: policy,
    });
  }

  #penalise(lease: Lease, p: Penalty, alreadyApplied?: Penalty): void {
    const { pool, clock } = this.#deps;
    if (alreadyApplied !== undefined && samePenalty(p, alreadyApplied)) return;
    const now = clock.now();
    if (p.kind === 'cool') pool.cool(lease.state, p.scope === 'key' ? '' : this.#req.demand.model, p.until, p.reason, now);
    else if (p.kind === 'disable') pool.disable(lease.state, p.reason, p.until);
  }

  #untriedLeft(): boolean {
    return this.#deps.pool.states().some((s) => s.disabled === undefined && !this.#tried.has(s));
  }

  #answerOf(r: Answered, body: string): UpstreamAnswer {
    return answerOf(r, body, this.#deps.scrub);
  }

  #stop(o: OutcomeBody): Next {
    return { kind: 'stop', outcome: this.#outcome(o) };
  }

  #outcome(o: OutcomeBody): ConnectOutcome {
    return { ...o, attempts: this.#attempts, retries: this.#retries, key: this.#key, trail: this.#trail } as ConnectOutcome;
  }

  #giveUp(): ConnectOutcome {
    const { pool, clock, scrub } = this.#deps;
    const g = giveUp({ pool, clock, scrub }, this.#req.demand, this.#last, this.#retries);
    return g.kind === 'answer' ? this.#outcome({ kind: 'answer', answer: g.answer }) : this.#outcome({ kind: 'error', error: g.error });
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type OutcomeBody = DistributiveOmit<ConnectOutcome, keyof Tally>;
