// The end of a proxied request: what the attempt loop (or the chain) came to, given to the client. An
// error or an answer already read is written whole; a response to deliver goes straight from undici into
// the client's socket, its usage read on the way, and a cut after it started is told the only way left
// (an event stream's last error event, else a close). Returns what the request's log line needs.
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ErrorFormat } from '../errors.js';
import { KeypoolError } from '../errors.js';
import type { BodyEnd } from './attempt.js';
import { keypoolHeaderList, keypoolHeaders, sendError } from './client-response.js';
import { clientResponseHeaderList, headerValue } from './headers.js';
import type { StreamKeepAlive } from './keep-alive.js';
import { errorInStream } from './provider-signals.js';
import type { Cancellation } from './request-signal.js';
import { RequestAborted, type RotateOutcome } from './rotate.js';
import { EventAligner, isEventStream, streamErrorEvent } from './sse.js';
import { UsageTap, type Usage } from './usage-tap.js';

/** Status logged for a request whose client left before it was answered (nginx's convention). */
export const CLIENT_CLOSED = 499;

export interface DeliveryContext {
  readonly res: ServerResponse;
  /** keypool's id for the request: x-keypool-request-id on whatever head is written. */
  readonly requestId: string;
  readonly format: ErrorFormat;
  readonly keepAlive: StreamKeepAlive | undefined;
  /** Headers keypool adds to what the upstream sent (which fallback served, with which model). */
  readonly extraHeaders: Readonly<Record<string, string>>;
  readonly signal: Cancellation;
  readonly abort: (why: RequestAborted) => void;
  /** How shutdown cuts this request; replaced once bytes may reach the client. */
  readonly me: { cut: (reason: string) => void };
  /** Ends the request's timers and listeners (once the answer is decided). */
  readonly done: () => void;
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly logger: Logger;
}

export interface Delivered {
  readonly status: number;
  readonly error?: string | undefined;
  readonly cut?: string | undefined;
  readonly deliveredMs: number;
  readonly upstreamRequestId: string | undefined;
  readonly usage: Usage | undefined;
}

export async function deliver(c: DeliveryContext, outcome: RotateOutcome): Promise<Delivered> {
  const { res, keepAlive, format } = c;
  const none = { deliveredMs: 0, upstreamRequestId: undefined, usage: undefined };
  switch (outcome.kind) {
    case 'aborted':
      c.done();
      res.destroy();
      return { status: CLIENT_CLOSED, ...none };
    case 'error':
      c.done();
      if (keepAlive?.committed) keepAlive.failWith(outcome.error, format);
      else {
        res.setHeader('x-keypool-request-id', c.requestId);
        for (const [k, v] of Object.entries(c.extraHeaders)) res.setHeader(k, v);
        sendError(res, outcome.error, outcome.attempts, outcome.key?.key.name, outcome.waitedMs, format);
      }
      return { status: outcome.error.status, error: outcome.error.code, ...none };
    case 'answer': {
      c.done();
      const { answer } = outcome;
      if (keepAlive?.committed) keepAlive.fail(answer.body);
      else {
        const body = Buffer.from(answer.body, 'utf8');
        const headers = keypoolHeaders({ ...answer.headers, ...c.extraHeaders, 'x-keypool-request-id': c.requestId, 'content-length': String(body.length) }, outcome.attempts, outcome.key?.key.name, outcome.waitedMs);
        res.writeHead(answer.status, headers);
        res.end(body);
      }
      return { status: answer.status, ...none };
    }
    case 'deliver':
      return stream(c, outcome);
  }
}

async function stream(c: DeliveryContext, outcome: Extract<RotateOutcome, { kind: 'deliver' }>): Promise<Delivered> {
  const { res, keepAlive, format } = c;
  const { attempt, lease, status } = outcome;
  // Whole events only where the bytes are the events: a compressed stream is passed on as it comes,
  // and a cut of it can only be told by closing (plaintext after gzip would be unreadable).
  const encoded = (headerValue(outcome.headers['content-encoding']) ?? 'identity').toLowerCase() !== 'identity';
  const events = isEventStream(outcome.headers['content-type']) && !encoded ? new EventAligner() : undefined;
  const upstreamRequestId = headerValue(outcome.headers['x-request-id']) ?? headerValue(outcome.headers['request-id']);
  // Usage is read from successful answers only; an error body reports none worth counting.
  const tap = status < 300 ? new UsageTap() : undefined;
  const tapChunk = tap === undefined ? undefined : (chunk: Buffer) => tap.push(chunk);
  const started = performance.now();
  // From here on bytes may reach the client: a cut ends an event stream with an error event.
  c.me.cut = (reason) => {
    c.abort(new RequestAborted('shutdown'));
    const error = new KeypoolError('keypool_stream_interrupted', `keypool ${reason}; the answer is incomplete.`);
    if (events !== undefined && res.headersSent && !res.writableEnded) res.end(streamErrorEvent(error, format));
    else if (!res.writableEnded) res.destroy();
  };
  let end: BodyEnd;
  try {
    if (keepAlive?.committed) {
      keepAlive.stop();
      // The 200 is already out: a non-2xx answer can only be told as an SSE error event.
      if (status >= 300) {
        // Nothing of it goes on: drop it with its connection (a dripping body must not hold it).
        attempt.cancel(new Error('not delivered'));
        keepAlive.fail(JSON.stringify(new KeypoolError('keypool_stream_interrupted', `Upstream answered ${status}.`).toBody(format)));
        end = { kind: 'complete' };
      } else {
        end = await attempt.deliver(res, events, tapChunk);
      }
    } else {
      const headers = clientResponseHeaderList(outcome.headers);
      headers.push('x-keypool-request-id', c.requestId);
      for (const name in c.extraHeaders) headers.push(name, c.extraHeaders[name]!);
      keypoolHeaderList(headers, outcome.attempts, lease.state.key.name, outcome.waitedMs);
      res.writeHead(status, headers);
      // A stream's first event may be seconds away; send the head now so the client knows it is on.
      if (outcome.headers['content-length'] === undefined) res.flushHeaders();
      end = await attempt.deliver(res, events, tapChunk);
    }
  } catch (err) {
    // writeHead refused the upstream's headers (invalid characters): nothing reached the client.
    attempt.cancel(err as Error);
    res.destroy();
    c.logger.warn({ err: (err as Error).message }, 'could not forward the upstream response');
    end = { kind: 'upstream', error: err as Error };
  } finally {
    lease.end(status < 300 ? 'successes' : undefined);
    c.done();
  }
  const got = { deliveredMs: performance.now() - started, upstreamRequestId, usage: tap?.read() };
  if (end.kind === 'complete') return { status, ...got };
  // Bytes may already be with the client: an event stream is told with a last error event, anything else closed.
  const why = c.signal.reason instanceof RequestAborted ? c.signal.reason.why : end.kind;
  if (why === 'client_closed') {
    res.destroy();
    return { status: CLIENT_CLOSED, cut: 'client_closed', ...got };
  }
  // me.cut has told the client already.
  if (why === 'shutdown') return { status: 503, cut: 'shutdown', error: 'keypool_stream_interrupted', ...got };
  const message =
    why === 'deadline'
      ? `The request deadline (retry.timeoutMs = ${c.timeoutMs} ms) passed mid-answer`
      : why === 'idle'
        ? `The upstream sent nothing for retry.idleTimeoutMs (${c.idleTimeoutMs} ms) mid-answer`
        : 'The upstream broke off mid-answer';
  if (events !== undefined && !res.writableEnded && !res.destroyed) {
    // The upstream's own error event already ended it: one final error, not two.
    const last = events.lastEvent();
    if (last !== undefined && errorInStream(last) !== undefined) res.end();
    else res.end(streamErrorEvent(new KeypoolError('keypool_stream_interrupted', `${message}; the answer is incomplete.`), format));
  } else {
    res.destroy();
  }
  return { status: why === 'deadline' ? 504 : 502, cut: why, error: 'keypool_stream_interrupted', ...got };
}
