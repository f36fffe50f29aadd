// buildApp(deps): the HTTP server keypool listens with: the proxy routes on a plain node:http handler
// (proxy/proxy-handler.ts), everything else (health, admin, metrics, 404s) on Fastify. It never
// listens; main.ts does, and tests use port 0.
import { createServer } from 'node:http';
import type { Dispatcher } from 'undici';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { registerAdmin } from './admin/register.js';
import { systemClock, type Clock } from './clock.js';
import type { Config, Upstream } from './config/load.js';
import { applyConfig, poolSettings, type ReloadReport } from './reload.js';
import { KeypoolError } from './errors.js';
import { startHealthProbes } from './health/prober.js';
import { KeyPool, type PoolEvent, type PoolListener } from './keys/pool.js';
import { ClientGate } from './clients/client-gate.js';
import { wsAuthenticator } from './clients/ws-auth.js';
import { clientErrorHandler, frameworkErrors, installHygiene } from './proxy/hygiene.js';
import { createProxy, type Proxy, type UpstreamRuntime } from './proxy/proxy-handler.js';
import { routingPath } from './proxy/request-target.js';
import { requestIdOf } from './proxy/request-id.js';
import { createUpstreamAgent } from './proxy/upstream-agent.js';
import { createWebSocketProxy, type WebSocketProxy } from './proxy/websocket-proxy.js';
import { WaitingRoom } from './keys/waiting-room.js';
import { Circuits } from './proxy/targets.js';
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
    /** The config in force (it changes on reload). */
    config: () => Config;
    /** Applies a new, already validated config in place (see reload.ts). */
    reload: (next: Config) => ReloadReport;
    /** Every upstream's circuit breaker (kept across reloads). */
    circuits: Circuits;
    /** WebSocket upgrades on the proxy routes: sessions open, and a way to close them at shutdown. */
    websockets: WebSocketProxy;
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
  const newRuntime = (u: Upstream, c: Config): UpstreamRuntime => {
    const pool = new KeyPool(u.name, u.keys, { ...poolSettings(u, c), random, listener, ledger: store });
    return { pool, room: new WaitingRoom(pool, clock, c.queue.maxSize) };
  };
  const runtimes = new Map<string, UpstreamRuntime>();
  for (const u of config.upstreams) runtimes.set(u.name, newRuntime(u, config));
  const upstreamAgent = createUpstreamAgent({ connectTimeoutMs: config.retry.connectTimeoutMs });
  const agent = upstreamAgent.dispatcher;
  const gate = gateFor(config);
  const circuits = new Circuits();
  const onCircuitOpen = (upstream: string, until: number): void => {
    logger.warn({ upstream, until: new Date(until).toISOString() }, 'circuit open: requests go to their fallbacks');
    replication?.circuitOpened(upstream, until);
  };
  const proxy = createProxy({ config, runtimes, agent, clock, random, logger, gate, circuits, onCircuitOpen });
  const pools = new Map([...runtimes].map(([name, r]) => [name, r.pool] as const));
  const rooms = new Map([...runtimes].map(([name, r]) => [name, r.room] as const));
  const websockets = createWebSocketProxy({ config, pools, route: (url) => proxy.route(url), clock, random, logger, authenticate: wsAuthenticator(gate) });

  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the app's type the default one.
    loggerInstance: logger as FastifyBaseLogger,
    // keypool logs one line per request itself, with attempts and key name (proxy/proxy-handler.ts).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.server.bodyLimitBytes,
    return503OnClosing: true,
    // Parse errors, oversized header blocks, unknown methods, undecodable URLs: OpenAI-shaped answers.
    clientErrorHandler: clientErrorHandler(logger as FastifyBaseLogger),
    frameworkErrors,
    serverFactory: (fastifyHandler) =>
      createServer((req, res) => {
        // The proxy routes are vetted by the proxy handler (request-target.ts), everything else by Fastify's hook.
        const path = routingPath(req.url ?? '/', req.headers.host);
        const route = path === undefined ? undefined : proxy.route(path);
        if (route !== undefined) proxy.handle(route, req, res);
        else fastifyHandler(req, res);
      }).on('upgrade', websockets.upgrade),
  });
  installHygiene(app);
  app.decorate('pools', pools);
  app.decorate('rooms', rooms);
  app.decorate('proxy', proxy);
  app.decorate('circuits', circuits);
  let live = config;
  app.decorate('config', () => live);
  app.decorate('reload', (next: Config): ReloadReport => {
    const target = { runtimes, pools, rooms, proxy, newRuntime, agent: upstreamAgent, gateFor, setLogLevel: (level: Config['log']['level']) => (logger.level = level) };
    const applied = applyConfig(target, live, next);
    live = next;
    websockets.reconfigure(next, wsAuthenticator(applied.gate));
    return applied.report;
  });
  app.decorate('websockets', websockets);
  // Upgraded sockets keep server.close() waiting: sessions are closed (1001) as shutdown begins.
  app.addHook('preClose', async () => {
    websockets.closeAll('is shutting down');
  });

  if (store) {
    replication = new Replication(app.pools, store, clock, logger, (upstream, until, now) => circuits.get(upstream)?.openFor(until, now));
    const sync = replication;
    app.addHook('onReady', async () => sync.sync());
    app.addHook('onClose', async () => store.close());
  }
  app.addHook('onClose', async () => agent.close());
  const probes = startHealthProbes({ config, pools: app.pools, clock, logger });
  if (probes) app.addHook('onClose', async () => probes.stop());

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const error = toKeypoolError(err);
    if (error.status >= 500) request.log.error({ err }, 'request failed');
    return reply.code(error.status).headers({ ...error.headers, 'x-keypool-request-id': requestIdOf(request.headers) }).send(error.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const prefixes = live.upstreams.map((u) => u.prefix).join(', ');
    const error = new KeypoolError(
      'keypool_route_not_found',
      `No upstream serves ${request.method} ${request.url.split('?')[0]}; configured prefixes: ${prefixes}.`,
    );
    return reply.code(error.status).header('x-keypool-request-id', requestIdOf(request.headers)).send(error.toBody());
  });

  // /readyz, the status page, the admin API and /metrics (src/admin/).
  registerAdmin(app, { config: () => live, clock });
  // Still 200 when the shared store is away: requests are served from local state meanwhile.
  app.get('/healthz', async () => (store ? { status: 'ok', sharedState: store.healthy ? 'ok' : 'degraded' } : { status: 'ok' }));
  return app;
}

function gateFor(c: Config): ClientGate | undefined {
  return c.clients === undefined ? undefined : new ClientGate(c.clients);
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
