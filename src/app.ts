// buildApp(deps): the HTTP server keypool listens with: the proxy routes on a plain node:http handler
// (proxy/proxy-handler.ts), everything else (health, admin, metrics, 404s) on Fastify. It never
// listens; main.ts does, and tests use port 0.
import { createServer } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { registerAdmin } from './admin/register.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config/load.js';
import { KeypoolError } from './errors.js';
import { KeyPool, type PoolEvent, type PoolListener } from './keys/pool.js';
import { createProxy, type Proxy, type UpstreamRuntime } from './proxy/proxy-handler.js';
import { createUpstreamAgent } from './proxy/upstream-agent.js';
import { WaitingRoom } from './keys/waiting-room.js';
import { Replication } from './state/replication.js';
import type { StateStore } from './state/store.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** One key pool per upstream, by upstream name. */
    pools: ReadonlyMap<string, KeyPool>;
    /** One waiting room per upstream, by upstream name. */
    rooms: ReadonlyMap<string, WaitingRoom>;
    /** The proxy routes' handler: requests in flight, and a way to cut them at shutdown. */
    proxy: Proxy;
  }
}

export interface AppDeps {
  readonly config: Config;
  readonly logger: Logger;
  /** @default systemClock */
  readonly clock?: Clock;
  /** Source of jitter. @default Math.random */
  readonly random?: () => number;
  /** Told of every cooldown and disable, e.g. for the demo's live output. */
  readonly onPoolEvent?: PoolListener;
  /**
   * The state shared with other replicas (facts, slots, windows, buckets, usage). Absent: this process's
   * pools are the whole truth. The app closes it when it closes.
   */
  readonly store?: StateStore;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, logger } = deps;
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;

  let replication: Replication | undefined;
  const listener = (event: PoolEvent): void => {
    logPoolEvent(logger, event, clock.now());
    replication?.local(event);
    deps.onPoolEvent?.(event);
  };
  const store = deps.store;
  const runtimes = new Map<string, UpstreamRuntime>();
  for (const u of config.upstreams) {
    const pool = new KeyPool(u.name, u.keys, {
      strategy: u.strategy,
      random,
      probeAfterMs: config.cooldown.probeAfterMs,
      // A probe is over by the request deadline at the latest.
      probeLeaseMs: config.retry.timeoutMs,
      maxHeaderMs: config.cooldown.maxMs,
      maxSessions: u.sticky?.maxSessions ?? 0,
      listener,
      ledger: store,
    });
    runtimes.set(u.name, { pool, room: new WaitingRoom(pool, clock, config.queue.maxSize) });
  }
  const agent = createUpstreamAgent({ connectTimeoutMs: config.retry.connectTimeoutMs });
  const proxy = createProxy({ config, runtimes, agent, clock, random, logger });

  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the app's type the default one.
    loggerInstance: logger as FastifyBaseLogger,
    // keypool logs one line per request itself, with attempts and key name (proxy/proxy-handler.ts).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.server.bodyLimitBytes,
    return503OnClosing: true,
    serverFactory: (fastifyHandler) =>
      createServer((req, res) => {
        const route = proxy.route(req.url ?? '/');
        if (route !== undefined) proxy.handle(route, req, res);
        else fastifyHandler(req, res);
      }),
  });
  app.decorate('pools', new Map([...runtimes].map(([name, r]) => [name, r.pool] as const)));
  app.decorate('rooms', new Map([...runtimes].map(([name, r]) => [name, r.room] as const)));
  app.decorate('proxy', proxy);

  if (store) {
    replication = new Replication(app.pools, store, clock, logger);
    const sync = replication;
    app.addHook('onReady', async () => sync.sync());
    app.addHook('onClose', async () => store.close());
  }
  app.addHook('onClose', async () => agent.close());

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const error = toKeypoolError(err);
    if (error.status >= 500) request.log.error({ err }, 'request failed');
    return reply.code(error.status).headers(error.headers).send(error.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const prefixes = config.upstreams.map((u) => u.prefix).join(', ');
    const error = new KeypoolError(
      'keypool_route_not_found',
      `No upstream serves ${request.method} ${request.url.split('?')[0]}; configured prefixes: ${prefixes}.`,
    );
    return reply.code(error.status).send(error.toBody());
  });

  // /readyz, the status page, the admin API and /metrics (src/admin/).
  registerAdmin(app, { config: () => config, clock });
  // Still 200 when the shared store is away: requests are served from local state meanwhile.
  app.get('/healthz', async () => (store ? { status: 'ok', sharedState: store.healthy ? 'ok' : 'degraded' } : { status: 'ok' }));
  return app;
}

function toKeypoolError(err: FastifyError): KeypoolError {
  if (err instanceof KeypoolError) return err;
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.statusCode === 413) {
    return new KeypoolError('keypool_body_too_large', 'Request body is larger than server.bodyLimitBytes.', { cause: err });
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new KeypoolError('keypool_invalid_request', err.message, { cause: err });
  }
  return new KeypoolError('keypool_internal_error', 'Internal error in keypool.', { cause: err });
}

function logPoolEvent(logger: Logger, event: PoolEvent, now: number): void {
  switch (event.type) {
    case 'disabled':
      logger.warn({ upstream: event.upstream, key: event.key, reason: event.reason, until: new Date(event.until).toISOString() }, 'key disabled');
      break;
    case 'cooldown':
      if (event.extended) {
        logger.info(
          {
            upstream: event.upstream,
            key: event.key,
            model: event.model === '' ? undefined : event.model,
            reason: event.reason,
            cooldownMs: Math.max(0, event.until - now),
          },
          'key cooling down',
        );
      }
      break;
  }
}
