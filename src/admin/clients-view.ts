// GET /admin/clients: per client what it has been served (from finished requests) and what it has
// going on now (in flight, waiting for a key). Pure over the tally and those live counts.
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../clock.js';
import type { WaitingRoom } from '../keys/waiting-room.js';
import type { ClientCounts, ClientTally } from './client-tally.js';
import { iso } from './key-view.js';

export interface ClientRow {
  readonly name: string;
  readonly requests: number;
  readonly inFlight: number;
  readonly waiting: number;
  readonly '2xx': number;
  readonly '3xx': number;
  readonly '4xx': number;
  readonly '5xx': number;
  readonly rateLimited: number;
  readonly tokensIn: number;
  readonly tokensOut: number;
  /** null for a client whose first request has not finished yet. */
  readonly lastSeen: string | null;
  readonly perMinute: { readonly requests: number };
}

export interface ClientsView {
  readonly now: string;
  readonly clients: readonly ClientRow[];
}

/**
 * Waiting clients as the waiting room tells them, once it does (the room's `gauges()`); until then no
 * client is reported waiting.
 */
interface RoomGaugesPort {
  gauges?: () => { readonly clients: readonly { readonly client: string; readonly waiting: number }[] };
}

export function waitingByClient(rooms: Iterable<WaitingRoom>): Map<string, number> {
  const out = new Map<string, number>();
  for (const room of rooms) {
    const gauges = (room as WaitingRoom & RoomGaugesPort).gauges?.();
    for (const c of gauges?.clients ?? []) out.set(c.client, (out.get(c.client) ?? 0) + c.waiting);
  }
  return out;
}

function row(name: string, c: Readonly<ClientCounts> | undefined, inFlight: number, waiting: number, now: number): ClientRow {
  return {
    name,
    requests: c?.requests ?? 0,
    inFlight,
    waiting,
    '2xx': c?.s2xx ?? 0,
    '3xx': c?.s3xx ?? 0,
    '4xx': c?.s4xx ?? 0,
    '5xx': c?.s5xx ?? 0,
    rateLimited: c?.rateLimited ?? 0,
    tokensIn: c?.tokensIn ?? 0,
    tokensOut: c?.tokensOut ?? 0,
    lastSeen: c === undefined ? null : iso(c.lastSeen),
    perMinute: { requests: c?.perMinute.total(now) ?? 0 },
  };
}

/** Clients seen most recently first; clients only in flight or waiting (nothing finished yet) after them. */
export function clientsView(tally: ClientTally, inflight: ReadonlyMap<string, number>, waiting: ReadonlyMap<string, number>, now: number): ClientsView {
  const rows = tally.entries().map(([name, c]) => row(name, c, inflight.get(name) ?? 0, waiting.get(name) ?? 0, now));
  for (const name of new Set([...inflight.keys(), ...waiting.keys()])) {
    if (tally.get(name) === undefined) rows.push(row(name, undefined, inflight.get(name) ?? 0, waiting.get(name) ?? 0, now));
  }
  return { now: iso(now), clients: rows };
}

export function registerClientRoutes(app: FastifyInstance, deps: { readonly clock: Clock; readonly tally: ClientTally }): void {
  app.get('/admin/clients', async (_request, reply) => {
    const view = clientsView(deps.tally, app.proxy.inflightByClient, waitingByClient(app.rooms.values()), deps.clock.now());
    return reply.header('cache-control', 'no-store').send(view);
  });
}
