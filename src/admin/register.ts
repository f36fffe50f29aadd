// registerAdmin(app, deps): keypool's operator surface on the Fastify side of the server. /readyz and
// the status page are open; the admin API (/admin/keys, /admin/clients, /admin/config) and /metrics sit
// behind the admin guard. One listener on app.proxy.onRequest (and one on app.websockets.onRequest) feeds
// them all (traffic.ts).
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import { adminGuard, type AdminSettings } from './admin-guard.js';
import { registerClientRoutes } from './clients-view.js';
import { registerConfigRoute } from './config-view.js';
import { registerKeyRoutes } from './key-routes.js';
import { createMetrics, registerMetricsRoute } from './metrics.js';
import { registerReadiness } from './readiness.js';
import { registerStatusPage } from './status-page.js';
import { Traffic } from './traffic.js';

export interface AdminDeps {
  /** The config in force: a reload may replace it. */
  readonly config: () => Config;
  readonly clock: Clock;
}

/** Admin requests carry no body worth reading; a small one is accepted and ignored, whatever its type. */
const ADMIN_BODY_LIMIT = 64 * 1024;

export function registerAdmin(app: FastifyInstance, deps: AdminDeps): Traffic {
  const { config, clock } = deps;
  // `admin:` is read as a structure: a config may have none.
  const settings = (): AdminSettings | undefined => (config() as Config & { readonly admin?: AdminSettings }).admin;
  const traffic = new Traffic(config());
  app.proxy.onRequest((r) => traffic.record(r, clock.now()));
  // WebSocket sessions count as requests too (status 101 once open). One refused before it was routed
  // names no upstream ('-') and is only logged: labels come from the config.
  app.websockets.onRequest((r) => {
    if (app.pools.has(r.upstream)) traffic.record(r, clock.now());
  });
  const registry = createMetrics(app, { clock, traffic });

  registerReadiness(app, clock);
  registerStatusPage(app);
  void app.register(async (guarded) => {
    guarded.addHook('onRequest', adminGuard(settings));
    // `POST /admin/keys/x/disable` with `content-type: application/json` and no body must not be a 400.
    guarded.removeAllContentTypeParsers();
    guarded.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: ADMIN_BODY_LIMIT }, (_request, _body, done) => done(null, undefined));
    registerKeyRoutes(guarded, { config, clock, traffic });
    registerClientRoutes(guarded, { clock, tally: traffic.clients });
    registerConfigRoute(guarded, config);
    registerMetricsRoute(guarded, registry);
  });
  return traffic;
}
