// WebSocket upgrades on the proxy routes (node:http's 'upgrade' event). Per upgrade: authenticate,
// check the handshake, rotate keys over upstream handshakes (websocket-connect.ts) while the client
// waits, then answer the client's handshake with what came of it: 101 and a relayed session
// (websocket-relay.ts), or the HTTP status no key could avoid. The client's credential never goes
// upstream; the pool key is injected into the upstream handshake only. Names, never secrets, are logged.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config, Upstream } from '../config/load.js';
import { KeypoolError, type ErrorFormat } from '../errors.js';
import { createScrubber } from '../keys/scrub.js';
import { requestIdOf } from './request-id.js';
import { resolveTarget } from './request-target.js';
import type { RequestListener } from './request-record.js';
import { RequestAborted } from './rotate.js';
import { ClientAcceptor } from './websocket-accept.js';
import { connectUpstream, type ConnectDeps, type ConnectOutcome } from './websocket-connect.js';
import { GOING_AWAY } from './websocket-close.js';
import { HeldClient } from './websocket-hold.js';
import { headerValue, logLine, pathOnly, recordOf, type Context, type RecordExtra } from './websocket-record.js';
import { HIGH_WATER_BYTES, LOW_WATER_BYTES, Relay } from './websocket-relay.js';
import { answerOnSocket, refuseWithError } from './websocket-refuse.js';
import { routeUpgrade, type AllowCheck } from './websocket-route.js';
import { checkUpgrade, queryModel, upstreamHandshakeHeaders, upstreamSubprotocols } from './websocket-request.js';
import { handshakeLines, keypoolHeaders } from './websocket-response.js';
import {
  HANDSHAKE_TIMEOUT_MS,
  MAX_MESSAGE_BYTES,
  type Authenticate,
  type SessionAdmission,
  type SessionView,
  type WebSocketProxy,
  type WebSocketProxyDeps,
} from './websocket-types.js';
import { SessionUsage } from './websocket-usage.js';

export { HANDSHAKE_TIMEOUT_MS, MAX_MESSAGE_BYTES } from './websocket-types.js';
export type { AuthOutcome, Authenticate, SessionView, WebSocketProxy, WebSocketProxyDeps } from './websocket-types.js';

/** Bytes a client may send before its handshake is answered (it should send none): more closes it. */
const MAX_EARLY_BYTES = 64 * 1024;
/** A client's x-request-id longer than this is cut (it is logged and echoed). */
/** Status logged for a client that left before its handshake was answered (nginx's convention). */
const CLIENT_CLOSED = 499;

interface Session {
  readonly view: Omit<SessionView, 'toClient' | 'toUpstream'>;
  readonly relay: Relay;
}

export function createWebSocketProxy(deps: WebSocketProxyDeps): WebSocketProxy {
  return new WsProxy(deps);
}

class WsProxy implements WebSocketProxy {
  closing = false;
  readonly upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  #deps: WebSocketProxyDeps;
  readonly #connect = new Map<string, ConnectDeps>();
  readonly #acceptor: ClientAcceptor;
  readonly #sessions = new Set<Session>();
  readonly #handshakes = new Set<HeldClient>();
  readonly #listeners: RequestListener[] = [];

  constructor(deps: WebSocketProxyDeps) {
    this.#deps = deps;
    this.#build(deps);
    this.#acceptor = new ClientAcceptor(deps.maxMessageBytes ?? MAX_MESSAGE_BYTES);
    this.upgrade = (req, socket, head) => {
      this.#upgrade(req, socket, head).catch((err: unknown) => {
        deps.logger.error({ err }, 'websocket upgrade failed');
        if (!socket.destroyed) refuseWithError(socket, new KeypoolError('keypool_internal_error', 'Internal error in keypool.'));
      });
    };
  }

  get handshaking(): number {
    return this.#handshakes.size;
  }

  sessions(): SessionView[] {
    return [...this.#sessions].map((s) => ({ ...s.view, toClient: s.relay.toClient, toUpstream: s.relay.toUpstream }));
  }

  onRequest(fn: RequestListener): void {
    this.#listeners.push(fn);
  }

  closeAll(reason: string): number {
    this.closing = true;
    const n = this.#sessions.size + this.#handshakes.size;
    for (const held of [...this.#handshakes]) held.abort(new RequestAborted('shutdown'));
    for (const s of [...this.#sessions]) s.relay.close(GOING_AWAY, `keypool ${reason}`.slice(0, 100));
    return n;
  }

  /** A reload: handshakes from now on use the new config, pools and token check; open sessions go on. */
  reconfigure(config: Config, authenticate: Authenticate | undefined): void {
    this.#deps = { ...this.#deps, config, authenticate };
    this.#build(this.#deps);
  }

  #build(deps: WebSocketProxyDeps): void {
    const maxMessageBytes = deps.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.#connect.clear();
    for (const u of deps.config.upstreams) {
      const pool = deps.pools.get(u.name);
      if (!pool) throw new Error(`no pool for upstream ${u.name}`);
      this.#connect.set(u.name, {
        pool,
        clock: deps.clock,
        random: deps.random,
        retry: deps.config.retry,
        policy: { ...deps.config.cooldown, replayAfterSend: deps.config.retry.replayAfterSend, dialect: u.format },
        scrub: createScrubber(u.keys),
        handshakeTimeoutMs: deps.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
        maxMessageBytes,
      });
    }
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const deps = this.#deps;
    const url = req.url ?? '/';
    const remote = req.socket.remoteAddress;
    const ctx: Context = { id: requestIdOf(req.headers), url, started: performance.now(), upstream: '-', client: remote ?? 'unknown', model: '' };
    // Errors on the raw socket (a reset mid-handshake) end up as 'close'; without a listener they would throw.
    socket.on('error', (err) => deps.logger.debug({ reqId: ctx.id, err: err.message }, 'websocket client socket error'));
    const refuse = (error: KeypoolError, format?: ErrorFormat): void => {
      refuseWithError(socket, error, keypoolHeaders(ctx.id, 0, undefined), format);
      this.#log(ctx, error.status, undefined, { error: error.code });
    };

    let allow: AllowCheck | undefined;
    let admit: ((upstream: string, now: number) => SessionAdmission) | undefined;
    if (deps.authenticate !== undefined) {
      const auth = await deps.authenticate(req.headers, remote);
      if (!auth.ok) return refuse(auth.error);
      ctx.client = auth.client;
      allow = auth.allow;
      admit = auth.admit;
      // The client may have gone while its token was checked: no key is used for nobody.
      if (socket.destroyed) return this.#log(ctx, CLIENT_CLOSED, undefined, { cut: 'client_closed' });
    } else {
      ctx.client = headerValue(req.headers[deps.config.queue.clientHeader]) ?? ctx.client;
    }
    if (this.closing) return refuse(new KeypoolError('keypool_shutting_down', 'keypool is shutting down; connect to another replica or retry shortly.'));
    const check = checkUpgrade(req.method, req.headers);
    if (check.kind === 'refuse') return refuse(new KeypoolError('keypool_invalid_request', check.message, { status: check.status, headers: check.headers }));
    const route = deps.route(url);
    if (route === undefined) {
      const prefixes = deps.config.upstreams.map((u) => u.prefix).join(', ');
      return refuse(new KeypoolError('keypool_route_not_found', `No upstream serves WebSocket ${pathOnly(url)}; configured prefixes: ${prefixes}.`));
    }
    // The prefix's members share one wire format: its refusals are in that shape, as on HTTP.
    const format = route.upstream.format;
    const host = headerValue(req.headers.host);
    // The same hygiene as HTTP, before anything else: a path that could leave the base path never gets a key.
    const hygiene = resolveTarget(req.method ?? 'GET', url, route.upstream, host);
    if (!hygiene.ok) return refuse(hygiene.error, format);
    const asked = queryModel(url);
    if (asked.repeated) return refuse(new KeypoolError('keypool_invalid_request', 'The handshake names its model more than once (?model=); name it once.'), format);
    ctx.model = asked.model;
    const routed = routeUpgrade(route, ctx.model, allow);
    ctx.upstream = routed.upstream.name;
    if (!routed.ok) return refuse(routed.error, format);
    const upstream = routed.upstream;
    const target = upstream === route.upstream ? hygiene : resolveTarget(req.method ?? 'GET', url, upstream, host);
    if (!target.ok) return refuse(target.error, format);
    const connect = this.#connect.get(upstream.name);
    if (connect === undefined) return refuse(new KeypoolError('keypool_route_not_found', `No upstream serves WebSocket ${pathOnly(url)}.`), format);
    // The client's limits, as on HTTP: a session is one request in flight until it ends, and one of its rpm.
    const admission = admit?.(upstream.name, deps.clock.now());
    if (admission !== undefined && !admission.ok) return refuse(admission.error, format);
    try {
      await this.#open(ctx, req, socket, head, upstream, target.path, check.offered, connect);
    } finally {
      admission?.release();
    }
  }

  /** Connects upstream (rotating keys at the handshake) and answers the client: a session, or the refusal. */
  async #open(ctx: Context, req: IncomingMessage, socket: Duplex, head: Buffer, upstream: Upstream, path: string, offered: readonly string[], connect: ConnectDeps): Promise<void> {

    // Until the handshake is answered the socket is ours: watch for the client leaving, keep what it sent.
    const held = new HeldClient(socket, head, MAX_EARLY_BYTES);
    this.#handshakes.add(held);
    let early: Buffer;
    let outcome: ConnectOutcome;
    try {
      outcome = await connectUpstream(connect, {
        url: `${upstream.origin}${path}`,
        headers: upstreamHandshakeHeaders(req.headers),
        authHeader: upstream.authHeader,
        protocols: upstreamSubprotocols(offered),
        demand: { model: ctx.model, tokens: 0 },
        session: upstream.sticky ? headerValue(req.headers[upstream.sticky.header]) : undefined,
        signal: held.signal,
      });
    } finally {
      this.#handshakes.delete(held);
      early = held.release();
    }

    const why = held.why;
    const clientGone = why === 'client_closed' || socket.destroyed || !socket.writable;
    if (outcome.kind === 'open' && (clientGone || why !== undefined)) {
      outcome.socket.terminate();
      outcome.lease.end(undefined);
    }
    if (clientGone) {
      socket.destroy();
      return this.#log(ctx, CLIENT_CLOSED, outcome, { cut: 'client_closed' });
    }
    if (why === 'shutdown' || outcome.kind === 'aborted') {
      const error = new KeypoolError('keypool_shutting_down', 'keypool is shutting down; connect to another replica or retry shortly.');
      refuseWithError(socket, error, keypoolHeaders(ctx.id, outcome.attempts, outcome.key));
      return this.#log(ctx, error.status, outcome, { error: error.code });
    }
    switch (outcome.kind) {
      case 'error':
        refuseWithError(socket, outcome.error, keypoolHeaders(ctx.id, outcome.attempts, outcome.key));
        return this.#log(ctx, outcome.error.status, outcome, { error: outcome.error.code });
      case 'answer': {
        const { answer } = outcome;
        answerOnSocket(socket, answer.status, { ...answer.headers, ...keypoolHeaders(ctx.id, outcome.attempts, outcome.key) }, answer.body);
        return this.#log(ctx, answer.status, outcome);
      }
      case 'open':
        return this.#session(ctx, req, socket, early, outcome, connect);
    }
  }

  /** Answers the client's handshake with 101 and relays the session until either side closes it. */
  async #session(ctx: Context, req: IncomingMessage, socket: Duplex, head: Buffer, outcome: Extract<ConnectOutcome, { kind: 'open' }>, connect: ConnectDeps): Promise<void> {
    const { lease, socket: upstream } = outcome;
    const keyName = lease.state.key.name;
    const client = this.#acceptor.accept(req, socket, head, { protocol: upstream.protocol, lines: handshakeLines(outcome.headers, connect.scrub, keypoolHeaders(ctx.id, outcome.attempts, keyName)) });
    // ws destroys a socket the client already half-closed.
    if (client === undefined) {
      upstream.terminate();
      lease.end(undefined);
      socket.destroy();
      return this.#log(ctx, CLIENT_CLOSED, outcome, { cut: 'client_closed' });
    }
    const usage = new SessionUsage();
    const relay = new Relay(client, upstream, {
      highWaterBytes: this.#deps.highWaterBytes ?? HIGH_WATER_BYTES,
      lowWaterBytes: this.#deps.lowWaterBytes ?? LOW_WATER_BYTES,
      scrub: connect.scrub,
      onMessage: (to, data, isBinary) => {
        if (to === 'client') usage.push(data, isBinary);
      },
      onError: (side, err) => this.#deps.logger.debug({ reqId: ctx.id, side, err: err.message }, 'websocket error'),
    });
    const session: Session = { view: { id: ctx.id, upstream: ctx.upstream, key: keyName, path: pathOnly(ctx.url), client: ctx.client }, relay };
    this.#sessions.add(session);
    // Closed while the upgrade completed: the session ends at once, with the rest.
    if (this.closing) relay.close(GOING_AWAY, 'keypool is shutting down');
    const end = await relay.ended;
    this.#sessions.delete(session);
    const used = usage.read();
    if (used !== undefined) connect.pool.countTokens(lease.state, used.input, used.output);
    lease.end('successes');
    this.#log(ctx, 101, outcome, { session: end, usage: used });
  }

  #log(ctx: Context, status: number, o: ConnectOutcome | undefined, extra: RecordExtra = {}): void {
    const record = recordOf(ctx, performance.now() - ctx.started, status, o, extra);
    this.#deps.logger.info(logLine(record, extra.session), 'websocket');
    for (const fn of this.#listeners) fn(record);
  }
}

