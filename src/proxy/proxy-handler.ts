// The proxy routes, served by a plain node:http handler in front of Fastify (which keeps health, admin
// and metrics): Fastify's routing, hooks and reply objects cost more per request than the rest of the
// hot path together. This module routes a request to its upstream's handler (serve-request.ts), keeps
// the requests in flight (for shutdown), and tells listeners of every finished request.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { ClientGate } from '../clients/client-gate.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import { KeypoolError } from '../errors.js';
import type { Upstream } from '../config/load.js';
import { requestIdOf } from './request-id.js';
import { sendError } from './client-response.js';
import type { RequestListener } from './request-record.js';
import { prefixHandler, type UpstreamHandler } from './serve-request.js';
import { buildTargets, type Circuits, type UpstreamRuntime } from './targets.js';

export type { UpstreamHandler } from './serve-request.js';
export type { UpstreamRuntime } from './targets.js';

export interface ProxyDeps {
  readonly config: Config;
  readonly runtimes: ReadonlyMap<string, UpstreamRuntime>;
  readonly agent: Dispatcher;
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  /** Client tokens, limits and allow-lists; undefined when no clients are configured. */
  readonly gate: ClientGate | undefined;
  /** Every upstream's circuit breaker, kept across reloads. */
  readonly circuits: Circuits;
  /** Told when a circuit opens (logged, shared with other replicas). */
  readonly onCircuitOpen?: ((upstream: string, until: number) => void) | undefined;
}

/** Paths keypool serves itself, whatever the upstream prefixes (a prefix of "/" must not hide them). */
const OWN_PATHS = ['/healthz', '/readyz', '/metrics', '/admin'];

/** One request in flight, as shutdown sees it. */
export interface Active {
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
  /**
   * A reload: new requests are routed and served by the new config, pools and gate from now on; requests
   * in flight finish with what they started with.
   */
  reconfigure(next: Pick<ProxyDeps, 'config' | 'runtimes' | 'gate'>): void;
}


export function createProxy(deps: ProxyDeps): Proxy {
  // Longest prefix first, so /v1/anthropic wins over /v1.
  const listeners: RequestListener[] = [];
  const byClient = new Map<string, number>();
  const build = (d: ProxyDeps): UpstreamHandler[] => {
    const targets = buildTargets(d, d.circuits);
    // Upstreams sharing a prefix are one route: the request's model picks the member (chain.ts).
    const byPrefix = new Map<string, Upstream[]>();
    for (const u of d.config.upstreams) byPrefix.set(u.prefix, [...(byPrefix.get(u.prefix) ?? []), u]);
    return [...byPrefix.values()].sort((a, b) => b[0]!.prefix.length - a[0]!.prefix.length).map((group) => prefixHandler(group, d, targets, listeners, byClient));
  };
  let current = deps;
  let handlers = build(deps);
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
        res.setHeader('x-keypool-request-id', requestIdOf(req.headers));
        sendError(res, new KeypoolError('keypool_shutting_down', 'keypool is shutting down; send the request to another replica or retry shortly.'), 0);
        return;
      }
      h.run(req, res, active).catch((err: unknown) => {
        current.logger.error({ err }, 'proxy handler failed');
        if (!res.headersSent) {
          // The id the request was given, if it got that far.
          if (!res.hasHeader('x-keypool-request-id')) res.setHeader('x-keypool-request-id', requestIdOf(req.headers));
          sendError(res, new KeypoolError('keypool_internal_error', 'Internal error in keypool.'), 0);
        }
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
    reconfigure(next) {
      current = { ...current, ...next };
      handlers = build(current);
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
