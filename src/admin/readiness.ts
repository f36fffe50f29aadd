// GET /readyz, for orchestrators (unauthenticated, like /healthz): 200 once every upstream has a key
// that is not disabled, 503 naming the upstreams that have none, and 503 while shutting down.
// Cooling and out-of-credit keys still count: they come back by themselves, and failing every replica's
// probe at once over a shared rate limit would turn a slowdown into an outage.
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../clock.js';
import { ANY_MODEL } from '../keys/key-state.js';
import type { KeyPool } from '../keys/pool.js';

export type Readiness =
  | { readonly ready: true }
  | { readonly ready: false; readonly reason: string; readonly upstreams: readonly string[] };

export function readiness(pools: ReadonlyMap<string, KeyPool>, closing: boolean, now: number): Readiness {
  if (closing) return { ready: false, reason: 'keypool is shutting down', upstreams: [] };
  const none: string[] = [];
  // nextAvailableAt ends disables whose period has run out before it answers: undefined means every key is disabled.
  for (const [name, pool] of pools) if (pool.nextAvailableAt(ANY_MODEL, now) === undefined) none.push(name);
  if (none.length === 0) return { ready: true };
  const reason = none.map((n) => `upstream ${n}: all ${pools.get(n)?.size ?? 0} key(s) are disabled`).join('; ');
  return { ready: false, reason, upstreams: none };
}

export function registerReadiness(app: FastifyInstance, clock: Clock): void {
  app.get('/readyz', async (_request, reply) => {
    const r = readiness(app.pools, app.proxy.closing, clock.now());
    reply.header('cache-control', 'no-store');
    if (r.ready) return reply.send({ status: 'ready' });
    return reply.code(503).send({ status: 'not_ready', reason: r.reason, upstreams: r.upstreams });
  });
}
