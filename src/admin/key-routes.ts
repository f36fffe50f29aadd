// GET /admin/keys and the operator's key actions: POST /admin/keys/:name/disable | enable | reset.
// disable holds until an operator enables the key; enable makes it usable now; reset also forgets its
// cooldowns, streaks, holds and probes. Each answers the key's new row. Every action is logged by name.
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import { KeypoolError } from '../errors.js';
import type { KeyPool, KeyState } from '../keys/pool.js';
import { keyRow, upstreamRow, UNTIL_ENABLED, type KeysView, type UpstreamSource } from './key-view.js';
import type { Traffic } from './traffic.js';

export const KEY_ACTIONS = ['disable', 'enable', 'reset'] as const;
export type KeyAction = (typeof KEY_ACTIONS)[number];

export interface KeyRoutesDeps {
  /** The config in force (upstreams and their prefixes may change on a reload). */
  readonly config: () => Pick<Config, 'upstreams'>;
  readonly clock: Clock;
  readonly traffic: Traffic;
}

/** The upstreams as the key view reads them, in config order. */
export function upstreamSources(app: FastifyInstance, deps: KeyRoutesDeps): UpstreamSource[] {
  const out: UpstreamSource[] = [];
  const now = deps.clock.now();
  for (const u of deps.config().upstreams) {
    const pool = app.pools.get(u.name);
    if (pool === undefined) continue;
    out.push({
      name: u.name,
      prefix: u.prefix,
      states: pool.states(),
      waiting: app.rooms.get(u.name)?.size ?? 0,
      perMinute: (key) => deps.traffic.perMinute(u.name, key, now),
    });
  }
  return out;
}

export function keysView(app: FastifyInstance, deps: KeyRoutesDeps): KeysView {
  const now = deps.clock.now();
  return { now: new Date(now).toISOString(), upstreams: upstreamSources(app, deps).map((u) => upstreamRow(u, now)) };
}

type Found = { readonly ok: true; readonly upstream: string; readonly pool: KeyPool; readonly state: KeyState } | { readonly ok: false; readonly error: KeypoolError };

/** The key by name, in the one upstream that has it (or the one `upstream` names). */
export function findKey(pools: ReadonlyMap<string, KeyPool>, name: string, upstream: string | undefined): Found {
  const hits: { upstream: string; pool: KeyPool; state: KeyState }[] = [];
  for (const [u, pool] of pools) {
    if (upstream !== undefined && u !== upstream) continue;
    const state = pool.states().find((s) => s.key.name === name);
    if (state !== undefined) hits.push({ upstream: u, pool, state });
  }
  const [hit] = hits;
  // The name is not echoed: what an operator pastes into a URL by mistake may be a key itself.
  if (hit === undefined) {
    const where = upstream === undefined ? 'any upstream' : 'the upstream ?upstream= names';
    return { ok: false, error: new KeypoolError('keypool_admin_key_not_found', `No key of that name in ${where}; GET /admin/keys lists them.`) };
  }
  if (hits.length > 1) {
    const names = hits.map((h) => h.upstream).join(', ');
    return { ok: false, error: new KeypoolError('keypool_invalid_request', `That key name is in several upstreams (${names}); add ?upstream=<name>.`) };
  }
  return { ok: true, ...hit };
}

export function applyAction(pool: KeyPool, state: KeyState, action: KeyAction): void {
  switch (action) {
    case 'disable':
      pool.disable(state, 'admin', UNTIL_ENABLED);
      return;
    case 'enable':
      pool.enable(state);
      return;
    case 'reset':
      pool.reset(state);
      return;
  }
}

/** Key names and upstream names are short; anything longer is not one (and is not echoed at length). */
const MAX_NAME = 256;

export function registerKeyRoutes(app: FastifyInstance, deps: KeyRoutesDeps): void {
  app.get('/admin/keys', async (_request, reply) => reply.header('cache-control', 'no-store').send(keysView(app, deps)));

  app.post<{ Params: { name: string; action: string }; Querystring: { upstream?: string } }>('/admin/keys/:name/:action', async (request, reply) => {
    const { name, action } = request.params;
    const upstream = request.query.upstream;
    if (!(KEY_ACTIONS as readonly string[]).includes(action)) {
      throw new KeypoolError('keypool_route_not_found', `Unknown key action; use one of: ${KEY_ACTIONS.join(', ')}.`);
    }
    if (name.length > MAX_NAME || (upstream !== undefined && upstream.length > MAX_NAME)) {
      throw new KeypoolError('keypool_admin_key_not_found', 'No such key.');
    }
    const found = findKey(app.pools, name, typeof upstream === 'string' ? upstream : undefined);
    if (!found.ok) throw found.error;
    applyAction(found.pool, found.state, action as KeyAction);
    request.log.info({ upstream: found.upstream, key: name, action }, 'admin key action');
    const now = deps.clock.now();
    const row = keyRow(found.state, now, deps.traffic.perMinute(found.upstream, name, now));
    return reply.header('cache-control', 'no-store').send({ upstream: found.upstream, ...row });
  });
}
