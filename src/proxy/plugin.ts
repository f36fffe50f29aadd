// The proxy routes: every method under each upstream's prefix. Buffers the body once for byte-exact
// replay, runs the attempt loop, then streams the chosen response to the client as it arrives.
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import type { Clock } from '../clock.js';
import type { Config, Upstream } from '../config/load.js';
import type { KeypoolError } from '../errors.js';
import type { KeyPool, KeyState } from '../keys/pool.js';
import { createScrubber } from '../keys/scrub.js';
import type { Forwarder } from './forward.js';
import { clientResponseHeaders, upstreamRequestHeaders, withKey } from './headers.js';
import { RequestAborted, rotate, type RotateDeps } from './rotate.js';

export interface ProxyDeps {
  readonly config: Config;
  readonly pools: ReadonlyMap<string, KeyPool>;
  readonly forwarder: Forwarder;
  readonly clock: Clock;
  readonly random: () => number;
}

/** Status logged for a request whose client left before it was answered (nginx's convention). */
const CLIENT_CLOSED = 499;

export function registerProxy(app: FastifyInstance, deps: ProxyDeps): void {
  // Bodies are bytes to replay, never parsed: re-serialising JSON would change number formatting.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  for (const upstream of deps.config.upstreams) {
    const pool = deps.pools.get(upstream.name);
    if (!pool) throw new Error(`no pool for upstream ${upstream.name}`);
    const handler = proxyHandler(upstream, {
      pool,
      clock: deps.clock,
      random: deps.random,
      retry: deps.config.retry,
      cooldown: deps.config.cooldown,
      scrub: createScrubber(upstream.keys),
    }, deps.forwarder);
    if (upstream.prefix === '/') {
      app.all('/*', handler);
    } else {
      app.all(upstream.prefix, handler);
      app.all(`${upstream.prefix}/*`, handler);
    }
  }
}

function proxyHandler(upstream: Upstream, rotateDeps: RotateDeps, forwarder: Forwarder) {
  const { clock, pool } = rotateDeps;
  const timeoutMs = rotateDeps.retry.timeoutMs;
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
    const path = upstreamPath(upstream, request.raw.url ?? '/');
    const baseHeaders = upstreamRequestHeaders(request.headers);
    const body = Buffer.isBuffer(request.body) && request.body.length > 0 ? request.body : undefined;
    const method = request.method as Dispatcher.HttpMethod;
    const raw = reply.raw;

    const ctl = new AbortController();
    const onClose = (): void => {
      if (!raw.writableFinished) ctl.abort(new RequestAborted('client_closed'));
    };
    raw.on('close', onClose);
    const cancelDeadline = clock.timer(timeoutMs, () => ctl.abort(new RequestAborted('deadline')));
    const done = (): void => {
      cancelDeadline();
      raw.off('close', onClose);
    };

    const outcome = await rotate(rotateDeps, {
      signal: ctl.signal,
      deadline: clock.now() + timeoutMs,
      send: (state, signal) =>
        forwarder.send(
          { origin: upstream.origin, path, method, headers: withKey(baseHeaders, upstream.authHeader, state.key.reveal()), body },
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
      sendError(reply, outcome.error, outcome.attempts, outcome.state);
      log(request, outcome.error.status, outcome.attempts, outcome.state, started, { error: outcome.error.code });
      return;
    }

    const { response, state, attempts } = outcome;
    reply.hijack();
    const headers = clientResponseHeaders(response.headers);
    headers['x-keypool-key'] = state.key.name;
    headers['x-keypool-attempts'] = String(attempts);
    let status = response.status;
    try {
      raw.writeHead(response.status, headers);
      // A stream's first event may be seconds away; send the headers now so the client knows it is on.
      if (response.headers['content-length'] === undefined) raw.flushHeaders();
      await pipeline(response.body, raw);
    } catch {
      // The client left mid-response, or the upstream broke off (or the deadline passed): pipeline has
      // destroyed both sides, which is all that can be done once bytes have reached the client.
      status = ctl.signal.aborted && ctl.signal.reason instanceof RequestAborted && ctl.signal.reason.why === 'client_closed'
        ? CLIENT_CLOSED
        : status;
    } finally {
      pool.end(state);
      done();
    }
    log(request, status, attempts, state, started);
  };
}

function sendError(reply: FastifyReply, error: KeypoolError, attempts: number, state: KeyState | undefined): void {
  reply.code(error.status).headers(error.headers).header('x-keypool-attempts', String(attempts));
  if (state) reply.header('x-keypool-key', state.key.name);
  void reply.send(error.toBody());
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
