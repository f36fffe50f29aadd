// The proxy routes, served by a plain node:http handler in front of Fastify (which keeps health, admin
// and metrics): Fastify's routing, hooks and reply objects cost more per request than the rest of the
// hot path together. Per request: buffer the body once (byte-exact replay), read what scheduling needs,
// run the attempt loop, then deliver the chosen response straight from undici into the client socket.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { Clock } from '../clock.js';
import type { Config, Upstream } from '../config/load.js';
import { KeypoolError } from '../errors.js';
import type { KeyPool, Lease } from '../keys/pool.js';
import { createScrubber } from '../keys/scrub.js';
import type { WaitingRoom } from '../keys/waiting-room.js';
import { Attempt, type BodyEnd } from './attempt.js';
import { clientResponseHeaders, setKey, upstreamRequestHeaders } from './headers.js';
import { StreamKeepAlive } from './keep-alive.js';
import { requestInfo } from './request-info.js';
import { logFields, type RequestListener, type RequestRecord } from './request-record.js';
import { RequestAborted, rotate, type RotateDeps, type RotateOutcome, type TrailStep } from './rotate.js';
import { UsageTap, type Usage } from './usage-tap.js';
import { EventAligner, isEventStream, streamErrorEvent } from './sse.js';

export interface UpstreamRuntime {
  readonly pool: KeyPool;
  readonly room: WaitingRoom;
}

export interface ProxyDeps {
  readonly config: Config;
  readonly runtimes: ReadonlyMap<string, UpstreamRuntime>;
  readonly agent: Dispatcher;
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
}

/** Paths keypool serves itself, whatever the upstream prefixes (a prefix of "/" must not hide them). */
const OWN_PATHS = ['/healthz', '/readyz', '/metrics', '/admin'];
/** A client's x-request-id longer than this is cut (it is logged and echoed). */
const MAX_REQUEST_ID = 128;
const NO_TRAIL: readonly TrailStep[] = [];
/** Status logged for a request whose client left before it was answered (nginx's convention). */
const CLIENT_CLOSED = 499;
const NO_FIELDS: readonly string[] = [];

/** One request in flight, as shutdown sees it. */
interface Active {
  /** Ends the request now: a started stream gets its final error event, anything else is closed. */
  cut(reason: string): void;
}

export interface Proxy {
  /** The upstream whose prefix serves this URL, if any (keypool's own paths never match). */
  route(url: string): UpstreamHandler | undefined;
  handle(upstream: UpstreamHandler, req: IncomingMessage, res: ServerResponse): void;
  /** Requests in flight now. */
  readonly inflight: number;
  /** Requests in flight now per client, once the client is known (the admin view); no entry at 0. */
  readonly inflightByClient: ReadonlyMap<string, number>;
  /** Ends every request in flight (shutdown after the grace period); how many were cut. */
  cutAll(reason: string): number;
  /** Set at shutdown: new requests get 503 (and their connection closed) instead of a key. */
  closing: boolean;
  /** Told of every proxied request once it is over (metrics, the admin view). */
  onRequest(fn: RequestListener): void;
}

export interface UpstreamHandler {
  readonly upstream: Upstream;
  readonly run: (req: IncomingMessage, res: ServerResponse, active: Set<Active>) => Promise<void>;
}

export function createProxy(deps: ProxyDeps): Proxy {
  // Longest prefix first, so /v1/anthropic wins over /v1.
  const listeners: RequestListener[] = [];
  const byClient = new Map<string, number>();
  const handlers = [...deps.config.upstreams]
    .sort((a, b) => b.prefix.length - a.prefix.length)
    .map((u) => upstreamHandler(u, deps, listeners, byClient));
  const active = new Set<Active>();
  return {
    closing: false,
    route(url) {
      for (const own of OWN_PATHS) if (under(url, own)) return undefined;
      for (const h of handlers) if (h.upstream.prefix === '/' || under(url, h.upstream.prefix)) return h;
      return undefined;
    },
    handle(h, req, res) {
      if (this.closing) {
        res.setHeader('connection', 'close');
        sendError(res, new KeypoolError('keypool_shutting_down', 'keypool is shutting down; send the request to another replica or retry shortly.'), 0);
        return;
      }
      h.run(req, res, active).catch((err: unknown) => {
        deps.logger.error({ err }, 'proxy handler failed');
        if (!res.headersSent) sendError(res, new KeypoolError('keypool_internal_error', 'Internal error in keypool.'), 0);
        else res.destroy();
      });
    },
    get inflight() {
      return active.size;
    },
    inflightByClient: byClient,
    onRequest(fn) {
      listeners.push(fn);
    },
    cutAll(reason) {
      const n = active.size;
      for (const a of [...active]) a.cut(reason);
      return n;
    },
  };
}

function under(url: string, prefix: string): boolean {
  if (!url.startsWith(prefix)) return false;
  const next = url.charCodeAt(prefix.length);
  // End of path, "/", or "?": /v1x is not under /v1.
  return Number.isNaN(next) || next === 0x2f || next === 0x3f;
}

function upstreamHandler(upstream: Upstream, deps: ProxyDeps, listeners: readonly RequestListener[], byClient: Map<string, number>): UpstreamHandler {
  const runtime = deps.runtimes.get(upstream.name);
  if (!runtime) throw new Error(`no pool for upstream ${upstream.name}`);
  const { config, clock, agent, logger } = deps;
  const { retry, cooldown, queue } = config;
  const rotateDeps: RotateDeps = {
    pool: runtime.pool,
    room: runtime.room,
    clock,
    random: deps.random,
    retry,
    policy: { ...cooldown, replayAfterSend: retry.replayAfterSend },
    scrub: createScrubber(upstream.keys),
  };
  const stickyFields = upstream.sticky?.bodyFields ?? NO_FIELDS;
  const bodyLimit = config.server.bodyLimitBytes;

  const run = async (req: IncomingMessage, res: ServerResponse, active: Set<Active>): Promise<void> => {
    const started = performance.now();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const requestId = headerValue(req.headers['x-request-id'])?.slice(0, MAX_REQUEST_ID) ?? randomUUID();
    let client = 'unknown';
    let model = '';
    let stream = false;
    let deliveredMs = 0;
    let upstreamRequestId: string | undefined;
    let usage: Usage | undefined;
    const log = (status: number, o: RotateOutcome | undefined, extra?: { error?: string; cut?: string }): void => {
      const record: RequestRecord = {
        id: requestId,
        method,
        path: pathOnly(url),
        upstream: upstream.name,
        client,
        model,
        stream,
        status,
        error: extra?.error,
        attempts: o?.attempts ?? 0,
        retries: o?.retries ?? 0,
        key: o?.key?.key.name,
        trail: o?.trail ?? NO_TRAIL,
        cut: extra?.cut,
        totalMs: performance.now() - started,
        waitedMs: o?.waitedMs ?? 0,
        upstreamMs: (o?.upstreamMs ?? 0) + deliveredMs,
        upstreamRequestId,
        usage,
      };
      if (usage !== undefined && o?.key !== undefined) runtime.pool.countTokens(o.key, usage.input, usage.output);
      logger.info(logFields(record), 'request');
      for (const fn of listeners) fn(record);
    };
    res.setHeader('x-keypool-request-id', requestId);

    const read = await readBody(req, bodyLimit);
    if (read === 'too_large') {
      const error = new KeypoolError('keypool_body_too_large', 'Request body is larger than server.bodyLimitBytes.');
      res.setHeader('connection', 'close');
      sendError(res, error, 0);
      log(error.status, undefined, { error: error.code });
      return;
    }
    if (read === 'aborted') {
      res.destroy();
      log(CLIENT_CLOSED, undefined);
      return;
    }
    const body = read;
    const path = upstreamPath(upstream, url);
    const baseHeaders = upstreamRequestHeaders(req.headers);
    const info = requestInfo(body, headerValue(req.headers['content-type']), stickyFields);
    model = info.demand.model;
    stream = info.stream;
    client = headerValue(req.headers[queue.clientHeader]) ?? req.socket.remoteAddress ?? 'unknown';
    const headersTimeoutMs = info.stream ? retry.streamHeadersTimeoutMs : retry.headersTimeoutMs;

    const ctl = new AbortController();
    let current: Attempt | undefined;
    const abort = (why: RequestAborted): void => {
      if (ctl.signal.aborted) return;
      ctl.abort(why);
      current?.cancel(why);
    };
    const onClose = (): void => {
      if (!res.writableFinished) abort(new RequestAborted('client_closed'));
    };
    res.on('close', onClose);
    const cancelDeadline = clock.timer(retry.timeoutMs, () => abort(new RequestAborted('deadline')));
    const keepAlive = queue.streamKeepAlive && info.stream ? new StreamKeepAlive(res, clock, queue.keepAliveIntervalMs) : undefined;
    // While the loop runs nothing has been sent: a cut is a plain close. Delivery replaces it.
    const me: { cut: (reason: string) => void } = { cut: () => abort(new RequestAborted('shutdown')) };
    active.add(me);
    byClient.set(client, (byClient.get(client) ?? 0) + 1);
    const done = (): void => {
      cancelDeadline();
      keepAlive?.stop();
      res.off('close', onClose);
      active.delete(me);
      const n = (byClient.get(client) ?? 1) - 1;
      if (n > 0) byClient.set(client, n);
      else byClient.delete(client);
    };

    const outcome = await rotate(rotateDeps, {
      signal: ctl.signal,
      deadline: clock.now() + retry.timeoutMs,
      method,
      demand: info.demand,
      client,
      session: upstream.sticky ? (headerValue(req.headers[upstream.sticky.header]) ?? info.sessionFromBody) : undefined,
      onWait: keepAlive ? () => keepAlive.start() : undefined,
      send: (lease: Lease) => {
        setKey(baseHeaders, upstream.authHeader, lease.state.key.reveal());
        current = new Attempt(agent, { origin: upstream.origin, path, method: method as Dispatcher.HttpMethod, headers: baseHeaders, body, headersTimeoutMs, idleTimeoutMs: retry.idleTimeoutMs });
        return current;
      },
    });

    switch (outcome.kind) {
      case 'aborted':
        done();
        res.destroy();
        log(CLIENT_CLOSED, outcome);
        return;
      case 'error':
        done();
        if (keepAlive?.committed) keepAlive.failWith(outcome.error);
        else sendError(res, outcome.error, outcome.attempts, outcome.key?.key.name, outcome.waitedMs);
        log(outcome.error.status, outcome, { error: outcome.error.code });
        return;
      case 'answer': {
        done();
        const { answer } = outcome;
        if (keepAlive?.committed) keepAlive.fail(answer.body);
        else {
          const body = Buffer.from(answer.body, 'utf8');
          const headers = keypoolHeaders({ ...answer.headers, 'content-length': String(body.length) }, outcome.attempts, outcome.key?.key.name, outcome.waitedMs);
          res.writeHead(answer.status, headers);
          res.end(body);
        }
        log(answer.status, outcome);
        return;
      }
      case 'deliver':
        break;
    }

    const { attempt, lease, status } = outcome;
    const events = isEventStream(outcome.headers['content-type']) ? new EventAligner() : undefined;
    upstreamRequestId = headerValue(outcome.headers['x-request-id']) ?? headerValue(outcome.headers['request-id']);
    // Usage is read from successful answers only; an error body reports none worth counting.
    const tap = status < 300 ? new UsageTap() : undefined;
    const tapChunk = tap === undefined ? undefined : (c: Buffer) => tap.push(c);
    const deliveryStarted = performance.now();
    // From here on bytes may reach the client: a cut ends an event stream with an error event.
    me.cut = (reason) => {
      abort(new RequestAborted('shutdown'));
      const error = new KeypoolError('keypool_stream_interrupted', `keypool ${reason}; the answer is incomplete.`);
      if (events !== undefined && res.headersSent && !res.writableEnded) res.end(streamErrorEvent(error));
      else if (!res.writableEnded) res.destroy();
    };
    let end: BodyEnd;
    try {
      if (keepAlive?.committed) {
        keepAlive.stop();
        // The 200 is already out: a non-2xx answer can only be told as an SSE error event.
        if (status >= 300) {
          attempt.discard();
          keepAlive.fail(JSON.stringify(new KeypoolError('keypool_stream_interrupted', `Upstream answered ${status}.`).toBody()));
          end = { kind: 'complete' };
        } else {
          end = await attempt.deliver(res, events, tapChunk);
        }
      } else {
        const headers = keypoolHeaders(clientResponseHeaders(outcome.headers), outcome.attempts, lease.state.key.name, outcome.waitedMs);
        res.writeHead(status, headers);
        // A stream's first event may be seconds away; send the head now so the client knows it is on.
        if (outcome.headers['content-length'] === undefined) res.flushHeaders();
        end = await attempt.deliver(res, events, tapChunk);
      }
    } catch (err) {
      // writeHead refused the upstream's headers (invalid characters): nothing reached the client.
      attempt.cancel(err as Error);
      res.destroy();
      logger.warn({ err: (err as Error).message }, 'could not forward the upstream response');
      end = { kind: 'upstream', error: err as Error };
    } finally {
      lease.end(status < 300 ? 'successes' : undefined);
      done();
      deliveredMs = performance.now() - deliveryStarted;
      usage = tap?.read();
    }
    if (end.kind === 'complete') {
      log(status, outcome);
      return;
    }
    // Bytes may already be with the client: an event stream is told with a last error event, anything else closed.
    const why = ctl.signal.reason instanceof RequestAborted ? ctl.signal.reason.why : end.kind;
    if (why === 'client_closed') {
      res.destroy();
      log(CLIENT_CLOSED, outcome, { cut: 'client_closed' });
      return;
    }
    if (why === 'shutdown') {
      // me.cut has told the client already.
      log(503, outcome, { cut: 'shutdown', error: 'keypool_stream_interrupted' });
      return;
    }
    const message =
      why === 'deadline'
        ? `The request deadline (retry.timeoutMs = ${retry.timeoutMs} ms) passed mid-answer`
        : why === 'idle'
          ? `The upstream sent nothing for retry.idleTimeoutMs (${retry.idleTimeoutMs} ms) mid-answer`
          : 'The upstream broke off mid-answer';
    if (events !== undefined && !res.writableEnded && !res.destroyed) {
      res.end(streamErrorEvent(new KeypoolError('keypool_stream_interrupted', `${message}; the answer is incomplete.`)));
    } else {
      res.destroy();
    }
    log(why === 'deadline' ? 504 : 502, outcome, { cut: why, error: 'keypool_stream_interrupted' });
  };
  return { upstream, run };
}

/** x-keypool-* on every answer: attempts, the key's name (never its secret), time waited. */
function keypoolHeaders<T extends Record<string, unknown>>(headers: T, attempts: number, key: string | undefined, waitedMs: number): T {
  const h = headers as Record<string, unknown>;
  h['x-keypool-attempts'] = String(attempts);
  if (key !== undefined) h['x-keypool-key'] = key;
  if (waitedMs > 0) h['x-keypool-wait-ms'] = String(Math.round(waitedMs));
  return headers;
}

function sendError(res: ServerResponse, error: KeypoolError, attempts: number, key?: string, waitedMs = 0): void {
  const body = JSON.stringify(error.toBody());
  const headers = keypoolHeaders({ ...error.headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)) }, attempts, key, waitedMs);
  res.writeHead(error.status, headers);
  res.end(body);
}

/** Buffers the request body once, up to `limit` bytes (every attempt replays the same bytes). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined | 'too_large' | 'aborted'> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) {
    req.resume();
    return Promise.resolve('too_large');
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) over = true;
      if (!over) chunks.push(c);
    };
    const finish = (r: Buffer | undefined | 'too_large' | 'aborted'): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onFail);
      req.off('close', onClose);
      resolve(r);
    };
    const onEnd = (): void => finish(over ? 'too_large' : size === 0 ? undefined : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onFail = (): void => finish('aborted');
    const onClose = (): void => {
      if (!req.complete) finish('aborted');
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onFail);
    req.on('close', onClose);
  });
}

function headerValue(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s;
}

/** baseUrl's path + what follows the prefix, query string kept byte for byte. */
export function upstreamPath(upstream: Pick<Upstream, 'prefix' | 'basePath'>, url: string): string {
  const rest = upstream.prefix === '/' ? url : url.slice(upstream.prefix.length);
  if (rest === '' || rest.startsWith('?')) return `${upstream.basePath === '' ? '/' : upstream.basePath}${rest}`;
  return `${upstream.basePath}${rest}`;
}

function pathOnly(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
