// What the attempt loop (rotate.ts) is given and what it gives back: its dependencies, one request, the
// budget a request's chain shares, and the outcome as a tagged union with the request's tallies.
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import type { KeypoolError } from '../errors.js';
import type { Demand, KeyPool, KeyState, Lease, UpstreamAnswer } from '../keys/pool.js';
import type { WaitingRoom } from '../keys/waiting-room.js';
import type { Attempt } from './attempt.js';
import type { Circuit } from './circuit.js';
import type { Cancellation } from './request-signal.js';
import type { PolicySettings } from './retry-policy.js';

/** Why a request's signal was aborted. */
export type AbortWhy = 'client_closed' | 'deadline' | 'shutdown';
export class RequestAborted extends Error {
  constructor(readonly why: AbortWhy) {
    super(why === 'deadline' ? 'request deadline passed' : why === 'shutdown' ? 'keypool is shutting down' : 'client closed the connection');
  }
}

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

export interface Tally {
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

export type OutcomeBody =
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
