// One proxied request, from its first byte to its log line: hygiene, the client's token and limits,
// the body buffered once, the attempt loop, then the answer delivered straight from undici into the
// client's socket (deliver.ts), and one record for the log and the listeners.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Upstream } from '../config/load.js';
import { KeypoolError } from '../errors.js';
import type { Lease } from '../keys/pool.js';
import { createScrubber } from '../keys/scrub.js';
import { Attempt, type BodyEnd } from './attempt.js';
import { keypoolHeaders, sendError } from './client-response.js';
import { clientResponseHeaders, headerValue, pathOnly, setKey, upstreamRequestHeaders, withDefaults, withoutQueryParams, withQueryKey } from './headers.js';
import { pathHints } from './path-model.js';
import { errorInStream } from './provider-signals.js';
import { readBody } from './request-body.js';
import { StreamKeepAlive } from './keep-alive.js';
import { requestInfo } from './request-info.js';
import { headerCountError, resolveTarget } from './request-target.js';
import { logFields, type RequestListener, type RequestRecord } from './request-record.js';
import { RequestAborted, rotate, type RotateDeps, type RotateOutcome, type TrailStep } from './rotate.js';
import type { Active, ProxyDeps } from './proxy-handler.js';
import { EventAligner, isEventStream, streamErrorEvent } from './sse.js';
import { UsageTap, type Usage } from './usage-tap.js';

/** A client's x-request-id longer than this is cut (it is logged and echoed). */
const MAX_REQUEST_ID = 128;
const NO_TRAIL: readonly TrailStep[] = [];
/** Status logged for a request whose client left before it was answered (nginx's convention). */
const CLIENT_CLOSED = 499;
const NO_FIELDS: readonly string[] = [];
/** The scope of a request without a readable model: its first path segments after the prefix, e.g. "path:/v1/audio/transcriptions". */
function endpointScope(path: string): string {
  const q = path.indexOf('?');
  const segments = (q === -1 ? path : path.slice(0, q)).split('/').filter((p) => p !== '').slice(0, 3);
  return `path:/${segments.join('/')}`;
}

/** Query parameters that carry a client's credential somewhere (Google's `key`): dropped before forwarding. */
const CREDENTIAL_PARAMS: ReadonlySet<string> = new Set(['key', 'api-key', 'api_key']);

export interface UpstreamHandler {
  readonly upstream: Upstream;
  readonly run: (req: IncomingMessage, res: ServerResponse, active: Set<Active>) => Promise<void>;
}

export function upstreamHandler(upstream: Upstream, deps: ProxyDeps, listeners: readonly RequestListener[], byClient: Map<string, number>): UpstreamHandler {
  const runtime = deps.runtimes.get(upstream.name);
  if (!runtime) throw new Error(`no pool for upstream ${upstream.name}`);
  const { config, clock, agent, logger, gate } = deps;
  const { retry, cooldown, queue } = config;
  const rotateDeps: RotateDeps = {
    pool: runtime.pool,
    room: runtime.room,
    clock,
    random: deps.random,
    retry,
    policy: { ...cooldown, replayAfterSend: retry.replayAfterSend, dialect: upstream.format },
    scrub: createScrubber(upstream.keys),
  };
  const stickyFields = upstream.sticky?.bodyFields ?? NO_FIELDS;
  const bodyLimit = config.server.bodyLimitBytes;

  const run = async (req: IncomingMessage, res: ServerResponse, active: Set<Active>): Promise<void> => {
    const admitted: { release: (() => void) | undefined } = { release: undefined };
    try {
      await serve(req, res, active, admitted);
    } finally {
      // A client's in-flight count is held until its request is over, however it ends.
      admitted.release?.();
    }
  };
  const serve = async (req: IncomingMessage, res: ServerResponse, active: Set<Active>, admitted: { release: (() => void) | undefined }): Promise<void> => {
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
    // Hygiene first: nothing goes anywhere for a target that could leave the base path, an odd method or too many headers.
    const target = resolveTarget(method, url, upstream, headerValue(req.headers.host));
    const refused = target.ok ? headerCountError(req.rawHeaders.length / 2) : target.error;
    if (refused !== undefined || !target.ok) {
      const error = refused ?? new KeypoolError('keypool_invalid_path', 'The request target could not be forwarded.');
      res.setHeader('connection', 'close');
      req.resume();
      sendError(res, error, 0, undefined, 0, upstream.format);
      log(error.status, undefined, { error: error.code });
      return;
    }
    // A credential in the query (Gemini clients send ?key=) is the client's, never forwarded.
    const path = withoutQueryParams(target.path, CREDENTIAL_PARAMS);

    // With clients configured, nothing of a request without a known token is read or sent anywhere.
    /** Answers before (or instead of) reading the body, and closes the connection once it is sent. */
    const refuseBeforeBody = (error: KeypoolError): void => {
      res.setHeader('connection', 'close');
      // A body still coming (or never ending) is not waited for: the connection closes after the answer.
      res.once('finish', () => req.socket.destroySoon());
      req.resume();
      sendError(res, error, 0, undefined, 0, upstream.format);
      log(error.status, undefined, { error: error.code });
    };
    const known = gate?.identify(req.headers);
    if (gate !== undefined && known === undefined) {
      refuseBeforeBody(gate.unauthorized());
      return;
    }
    client = known?.name ?? headerValue(req.headers[queue.clientHeader]) ?? req.socket.remoteAddress ?? 'unknown';
    // A client at its limit is refused before its body is read: nothing of it is buffered.
    const admission = known === undefined || gate === undefined ? undefined : gate.admit(known, upstream.name, clock.now());
    if (admission !== undefined && !admission.ok) {
      refuseBeforeBody(admission.error);
      return;
    }
    // Counted until the request is over, however it ends (the admin view's "in flight" too).
    byClient.set(client, (byClient.get(client) ?? 0) + 1);
    const counted = client;
    admitted.release = () => {
      admission?.release();
      const n = (byClient.get(counted) ?? 1) - 1;
      if (n > 0) byClient.set(counted, n);
      else byClient.delete(counted);
    };

    const read = await readBody(req, bodyLimit);
    if (read === 'too_large') {
      refuseBeforeBody(new KeypoolError('keypool_body_too_large', 'Request body is larger than server.bodyLimitBytes.'));
      return;
    }
    if (read === 'aborted') {
      res.destroy();
      log(CLIENT_CLOSED, undefined);
      return;
    }
    const body = read;
    const baseHeaders = withDefaults(upstreamRequestHeaders(req.headers), upstream.defaultHeaders);
    const info = requestInfo(body, headerValue(req.headers['content-type']), stickyFields);
    const hints = pathHints(upstream.provider, path);
    model = hints.model ?? info.demand.model;
    // Rate limits and refusals are kept per model; a request whose model cannot be read (a multipart
    // upload, a non-JSON body) is kept per endpoint instead, never key-wide: a whisper 429 must not
    // block chat completions.
    const demand = { model: model === '' ? endpointScope(path) : model, tokens: info.demand.tokens };
    stream = info.stream || hints.stream;
    const headersTimeoutMs = stream ? retry.streamHeadersTimeoutMs : retry.headersTimeoutMs;
    const refusedModel = known === undefined ? undefined : gate?.refuseModel(known, upstream.name, model);
    if (refusedModel !== undefined) {
      sendError(res, refusedModel, 0, undefined, 0, upstream.format);
      log(refusedModel.status, undefined, { error: refusedModel.code });
      return;
    }

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
    const keepAlive = queue.streamKeepAlive && stream ? new StreamKeepAlive(res, clock, queue.keepAliveIntervalMs) : undefined;
    // While the loop runs nothing has been sent: a cut is a plain close. Delivery replaces it.
    const me: { cut: (reason: string) => void } = { cut: () => abort(new RequestAborted('shutdown')) };
    active.add(me);
    const done = (): void => {
      cancelDeadline();
      keepAlive?.stop();
      res.off('close', onClose);
      active.delete(me);
    };

    const outcome = await rotate(rotateDeps, {
      signal: ctl.signal,
      deadline: clock.now() + retry.timeoutMs,
      method,
      demand,
      client,
      session: upstream.sticky ? (headerValue(req.headers[upstream.sticky.header]) ?? info.sessionFromBody) : undefined,
      onWait: keepAlive ? () => keepAlive.start() : undefined,
      stream,
      commitOnContentMs: stream ? upstream.commitOnContentMs : undefined,
      send: (lease: Lease) => {
        const o = lease.state.key.options;
        // A key with its own baseUrl (another Azure resource) gets the same request under its own base path.
        let to = o.basePath === undefined ? path : o.basePath + path.slice(upstream.basePath.length);
        if (upstream.auth.kind === 'header') setKey(baseHeaders, upstream.auth.name, lease.state.key.reveal());
        else to = withQueryKey(to, upstream.auth.name, lease.state.key.reveal());
        current = new Attempt(agent, { origin: o.origin ?? upstream.origin, path: to, method: method as Dispatcher.HttpMethod, headers: baseHeaders, body, headersTimeoutMs, idleTimeoutMs: retry.idleTimeoutMs });
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
        if (keepAlive?.committed) keepAlive.failWith(outcome.error, upstream.format);
        else sendError(res, outcome.error, outcome.attempts, outcome.key?.key.name, outcome.waitedMs, upstream.format);
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
    // Whole events only where the bytes are the events: a compressed stream is passed on as it comes,
    // and a cut of it can only be told by closing (plaintext after gzip would be unreadable).
    const encoded = (headerValue(outcome.headers['content-encoding']) ?? 'identity').toLowerCase() !== 'identity';
    const events = isEventStream(outcome.headers['content-type']) && !encoded ? new EventAligner() : undefined;
    upstreamRequestId = headerValue(outcome.headers['x-request-id']) ?? headerValue(outcome.headers['request-id']);
    // Usage is read from successful answers only; an error body reports none worth counting.
    const tap = status < 300 ? new UsageTap() : undefined;
    const tapChunk = tap === undefined ? undefined : (c: Buffer) => tap.push(c);
    const deliveryStarted = performance.now();
    // From here on bytes may reach the client: a cut ends an event stream with an error event.
    me.cut = (reason) => {
      abort(new RequestAborted('shutdown'));
      const error = new KeypoolError('keypool_stream_interrupted', `keypool ${reason}; the answer is incomplete.`);
      if (events !== undefined && res.headersSent && !res.writableEnded) res.end(streamErrorEvent(error, upstream.format));
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
      // The upstream's own error event already ended it: one final error, not two.
      const last = events.lastEvent();
      if (last !== undefined && errorInStream(last) !== undefined) res.end();
      else res.end(streamErrorEvent(new KeypoolError('keypool_stream_interrupted', `${message}; the answer is incomplete.`), upstream.format));
    } else {
      res.destroy();
    }
    log(why === 'deadline' ? 504 : 502, outcome, { cut: why, error: 'keypool_stream_interrupted' });
  };
  return { upstream, run };
}
