// The proxy routes: every method under each upstream's prefix. Buffers the body once for byte-exact
// replay, reads what scheduling needs from it, runs the attempt loop, then streams the chosen response
// to the client as it arrives.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import type { Clock } from '../clock.js';
import type { Config, Upstream } from '../config/load.js';
import type { KeypoolError } from '../errors.js';
import type { KeyPool, KeyState } from '../keys/pool.js';
import { createScrubber } from '../keys/scrub.js';
import type { WaitingRoom } from '../keys/waiting-room.js';
import { pipeBody, readSnippet, type Forwarder } from './forward.js';
import { clientResponseHeaders, setKey, upstreamRequestHeaders } from './headers.js';
import { StreamKeepAlive } from './keep-alive.js';
import { requestInfo } from './request-info.js';
import { resolveTarget } from './request-target.js';
import { RequestAborted, rotate, type RotateDeps } from './rotate.js';

export interface UpstreamRuntime {
  readonly pool: KeyPool;
  readonly room: WaitingRoom;
}

export interface ProxyDeps {
  readonly config: Config;
  readonly runtimes: ReadonlyMap<string, UpstreamRuntime>;
  readonly forwarder: Forwarder;
  readonly clock: Clock;
  readonly random: () => number;
}

/** Status logged for a request whose client left before it was answered (nginx's convention). */
const CLIENT_CLOSED = 499;
const NO_FIELDS: readonly string[] = [];

export function registerProxy(app: FastifyInstance, deps: ProxyDeps): void {
  // Bodies are bytes to replay, never re-serialised: that would change number formatting.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  for (const upstream of deps.config.upstreams) {
    const runtime = deps.runtimes.get(upstream.name);
    if (!runtime) throw new Error(`no pool for upstream ${upstream.name}`);
    const rotateDeps: RotateDeps = {
      pool: runtime.pool,
      room: runtime.room,
      clock: deps.clock,
      random: deps.random,
      retry: deps.config.retry,
      cooldown: deps.config.cooldown,
      scrub: createScrubber(upstream.keys),
    };
    const handler = proxyHandler(upstream, rotateDeps, deps.forwarder, deps.config.queue);
    if (upstream.prefix === '/') {
      app.all('/*', handler);
    } else {
      app.all(upstream.prefix, handler);
      app.all(`${upstream.prefix}/*`, handler);
    }
  }
}

function proxyHandler(upstream: Upstream, rotateDeps: RotateDeps, forwarder: Forwarder, queue: Config['queue']) {
  const { clock, pool } = rotateDeps;
  const timeoutMs = rotateDeps.retry.timeoutMs;
  const stickyFields = upstream.sticky?.bodyFields ?? NO_FIELDS;
  const log = (request: FastifyRequest, status: number, attempts: number, state: KeyState | undefined, started: number, extra?: object) => {
    request.log.info(
      {
        method: request.method,
        path: pathOnly(request.raw.url),
        upstream: upstream.name,
        status,
        attempts,
        key: state?.key.name,
        ms: Math.round((performance.now() - started) * 10) / 10,
        ...extra,
      },
      'request',
    );
  };

  return async function handle(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const started = performance.now();
    const target = resolveTarget(request.method, request.raw.url ?? '/', upstream, request.headers.host);
    if (!target.ok) {
      void reply.code(target.error.status).headers(target.error.headers).send(target.error.toBody());
      log(request, target.error.status, 0, undefined, started, { error: target.error.code });
      return;
    }
    const path = target.path;
    const baseHeaders = upstreamRequestHeaders(request.headers);
    const body = Buffer.isBuffer(request.body) && request.body.length > 0 ? request.body : undefined;
    const method = request.method as Dispatcher.HttpMethod;
    const info = requestInfo(body, request.headers['content-type'], stickyFields);
    const raw = reply.raw;

    const ctl = new AbortController();
    const onClose = (): void => {
      if (!raw.writableFinished) ctl.abort(new RequestAborted('client_closed'));
    };
    raw.on('close', onClose);
    const cancelDeadline = clock.timer(timeoutMs, () => ctl.abort(new RequestAborted('deadline')));
    const keepAlive = queue.streamKeepAlive && info.stream ? new StreamKeepAlive(raw, clock, queue.keepAliveIntervalMs) : undefined;
    const done = (): void => {
      cancelDeadline();
      keepAlive?.stop();
      raw.off('close', onClose);
    };

    const outcome = await rotate(rotateDeps, {
      signal: ctl.signal,
      deadline: clock.now() + timeoutMs,
      demand: info.demand,
      client: headerValue(request.headers[queue.clientHeader]) ?? request.ip,
      session: upstream.sticky ? (headerValue(request.headers[upstream.sticky.header]) ?? info.sessionFromBody) : undefined,
      onWait: keepAlive
        ? () => {
            reply.hijack();
            keepAlive.start();
          }
        : undefined,
      send: (state, signal) =>
        forwarder.send(
          { origin: upstream.origin, path, method, headers: setKey(baseHeaders, upstream.authHeader, state.key.reveal()), body },
          signal,
        ),
    });

    if (outcome.kind === 'aborted') {
      done();
      reply.hijack();
      raw.destroy();
      log(request, CLIENT_CLOSED, outcome.attempts, outcome.state, started);
      return;
    }
    if (outcome.kind === 'error') {
      done();
      if (keepAlive?.committed) keepAlive.failWith(outcome.error);
      else sendError(reply, outcome);
      log(request, outcome.error.status, outcome.attempts, outcome.state, started, { error: outcome.error.code });
      return;
    }

    const { response, lease, attempts, waitedMs } = outcome;
    const state = lease.state;
    let status = response.status;
    let complete = false;
    try {
      if (keepAlive?.committed) {
        keepAlive.stop();
        // The 200 is already out: a non-2xx answer can only be told as an SSE error event.
        if (response.status >= 300) {
          keepAlive.fail(await readSnippet(response, (ms, fn) => clock.timer(ms, fn)));
          complete = true;
        } else {
          complete = await pipeBody(response.body, raw);
        }
      } else {
        reply.hijack();
        const headers = clientResponseHeaders(response.headers);
        headers['x-keypool-key'] = state.key.name;
        headers['x-keypool-attempts'] = String(attempts);
        if (waitedMs > 0) headers['x-keypool-wait-ms'] = String(Math.round(waitedMs));
        raw.writeHead(response.status, headers);
        // A stream's first event may be seconds away; send the headers now so the client knows it is on.
        if (response.headers['content-length'] === undefined) raw.flushHeaders();
        complete = await pipeBody(response.body, raw);
      }
    } catch (err) {
      // writeHead refused the upstream's headers (invalid characters): nothing reached the client.
      response.body.destroy();
      raw.destroy();
      request.log.warn({ err: (err as Error).message }, 'could not forward the upstream response');
    } finally {
      lease.end(response.status < 300 ? 'successes' : undefined);
      done();
    }
    if (!complete) {
      // Bytes may already be with the client: all that can be done is to close, and to log why.
      const why = ctl.signal.reason;
      status = why instanceof RequestAborted ? (why.why === 'client_closed' ? CLIENT_CLOSED : 504) : 502;
    }
    log(request, status, attempts, state, started, waitedMs > 0 ? { waitMs: Math.round(waitedMs) } : undefined);
  };
}

function sendError(reply: FastifyReply, outcome: { error: KeypoolError; attempts: number; state: KeyState | undefined; waitedMs: number }): void {
  const { error, state, waitedMs } = outcome;
  reply.code(error.status).headers(error.headers).header('x-keypool-attempts', String(outcome.attempts));
  if (state) reply.header('x-keypool-key', state.key.name);
  if (waitedMs > 0) reply.header('x-keypool-wait-ms', String(Math.round(waitedMs)));
  void reply.send(error.toBody());
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

function pathOnly(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
