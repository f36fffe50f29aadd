// What one WebSocket upgrade leaves behind: the request record (the HTTP routes' shape, so metrics and the
// admin view count both alike) and its log line, with the session's close and traffic. Names only, never
// a secret; a client's close reason is not logged (it is the client's own text). Pure.
import type { IncomingHttpHeaders } from 'node:http';
import { logFields, type RequestRecord } from './request-record.js';
import type { TrailStep } from './rotate.js';
import type { ConnectOutcome } from './websocket-connect.js';
import type { RelayEnd } from './websocket-relay.js';

const NO_TRAIL: readonly TrailStep[] = [];

/** What one upgrade's record needs, filled in as the upgrade goes. */
export interface Context {
  readonly id: string;
  readonly url: string;
  /** performance.now() when the upgrade arrived. */
  readonly started: number;
  upstream: string;
  client: string;
  model: string;
}

export interface RecordExtra {
  readonly error?: string;
  readonly cut?: string;
  readonly session?: RelayEnd;
  readonly usage?: RequestRecord['usage'];
}

export function recordOf(ctx: Context, totalMs: number, status: number, o: ConnectOutcome | undefined, extra: RecordExtra): RequestRecord {
  return {
    id: ctx.id,
    method: 'GET',
    path: pathOnly(ctx.url),
    upstream: ctx.upstream,
    chain: [ctx.upstream],
    client: ctx.client,
    model: ctx.model,
    stream: true,
    status,
    error: extra.error,
    attempts: o?.attempts ?? 0,
    retries: o?.retries ?? 0,
    key: o?.kind === 'open' ? o.lease.state.key.name : o?.key,
    trail: o?.trail ?? NO_TRAIL,
    cut: extra.cut,
    totalMs,
    waitedMs: 0,
    upstreamMs: 0,
    upstreamRequestId: o?.kind === 'open' ? upstreamRequestId(o.headers) : undefined,
    usage: extra.usage,
  };
}

/** The log line's fields: the HTTP line's, marked as a WebSocket, plus how the session ended. */
export function logLine(record: RequestRecord, s: RelayEnd | undefined): Record<string, unknown> {
  const base = { ...logFields(record), websocket: true };
  if (s === undefined) return base;
  return {
    ...base,
    closedBy: s.closedBy,
    closeCode: s.code,
    closeReason: s.reason === '' || s.closedBy === 'client' ? undefined : s.reason,
    msgsIn: s.toUpstream.messages,
    msgsOut: s.toClient.messages,
    bytesIn: s.toUpstream.bytes,
    bytesOut: s.toClient.bytes,
    pauses: s.toClient.pauses + s.toUpstream.pauses || undefined,
  };
}

function upstreamRequestId(headers: IncomingHttpHeaders): string | undefined {
  return headerValue(headers['x-request-id']) ?? headerValue(headers['request-id']);
}

export function headerValue(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s;
}

/** Without the query string (it may carry a credential). */
export function pathOnly(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
