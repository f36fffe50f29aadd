// One record per proxied request, built once when it ends: what the log line says and what metrics
// and the admin view count. Names and fingerprints only: a record never holds a secret.
import type { TrailStep } from './rotate.js';
import type { Usage } from './usage-tap.js';

export interface RequestRecord {
  /** keypool's id for the request (the client's x-request-id when it sent one). */
  readonly id: string;
  readonly method: string;
  /** Without the query string (it may carry a credential). */
  readonly path: string;
  /** The upstream that answered (a fallback, when the chain went on), or the one that was asked. */
  readonly upstream: string;
  /** Every upstream the request was tried on, in order: [primary, fallbacks...]. */
  readonly chain: readonly string[];
  /** Who asked: the client token's name, the x-agent-id header, or the remote address. */
  readonly client: string;
  /** The request's model; '' when unknown. */
  readonly model: string;
  /** The model the answering upstream was asked for, when a fallback asked for another. */
  readonly servedModel?: string | undefined;
  readonly stream: boolean;
  /** What the client got (499: it left first). */
  readonly status: number;
  /** keypool's error code, when keypool answered with an error or cut the answer. */
  readonly error: string | undefined;
  readonly attempts: number;
  /** Units of retry.maxRetries spent. */
  readonly retries: number;
  /** The key that served, if any. */
  readonly key: string | undefined;
  /** Every attempt: the key, what it came to, what keypool did next. */
  readonly trail: readonly TrailStep[];
  /** Why an answer that had started was cut, if it was. */
  readonly cut: string | undefined;
  readonly totalMs: number;
  /** Time waiting in the room for a key. */
  readonly waitedMs: number;
  /** Time the upstream took: each attempt's send to head, plus the delivered body. */
  readonly upstreamMs: number;
  /** The upstream's own request id (OpenAI's x-request-id, Anthropic's request-id), for support tickets. */
  readonly upstreamRequestId: string | undefined;
  readonly usage: Usage | undefined;
}

export type RequestListener = (r: RequestRecord) => void;

/** The record as a log line's fields: short names, nothing empty. */
export function logFields(r: RequestRecord): Record<string, unknown> {
  const round = (ms: number): number => Math.round(ms * 10) / 10;
  return {
    reqId: r.id,
    method: r.method,
    path: r.path,
    upstream: r.upstream,
    // Only when the request went past its first upstream.
    chain: r.chain.length > 1 ? r.chain : undefined,
    client: r.client,
    model: r.model === '' ? undefined : r.model,
    servedModel: r.servedModel,
    stream: r.stream || undefined,
    status: r.status,
    error: r.error,
    attempts: r.attempts,
    retries: r.retries > 0 ? r.retries : undefined,
    key: r.key,
    // Only when something other than one clean attempt happened: the common line stays short.
    tried: r.trail.length > 1 || (r.trail[0] !== undefined && r.trail[0].then !== 'deliver') ? r.trail.map((t) => (t.upstream === r.upstream ? `${t.key}:${t.result}:${t.then}` : `${t.upstream}/${t.key}:${t.result}:${t.then}`)) : undefined,
    cut: r.cut,
    ms: round(r.totalMs),
    upstreamMs: round(r.upstreamMs),
    proxyMs: round(Math.max(0, r.totalMs - r.upstreamMs - r.waitedMs)),
    waitMs: r.waitedMs > 0 ? Math.round(r.waitedMs) : undefined,
    upstreamReqId: r.upstreamRequestId,
    tokensIn: r.usage?.input,
    tokensOut: r.usage?.output,
  };
}
