// What the WebSocket proxy (websocket-proxy.ts) is given and offers: its dependencies, the client-token
// hook, the open sessions as the admin view sees them, and its defaults.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Config } from '../config/load.js';
import type { KeypoolError } from '../errors.js';
import type { KeyPool } from '../keys/pool.js';
import type { RequestListener } from './request-record.js';
import type { FlowStats } from './websocket-relay.js';
import type { AllowCheck, PrefixRoute } from './websocket-route.js';

/**
 * Largest message either side may send (ws closes the session with 1009 past it). The Realtime API
 * takes audio chunks of up to 15 MiB in one `input_audio_buffer.append`.
 */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Longest one upstream handshake may take, connection included, before the next key is tried. */
export const HANDSHAKE_TIMEOUT_MS = 30_000;

/** A client's limits (clients[].maxConcurrent, rpm) for one session: counted until `release`. */
export type SessionAdmission = { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly error: KeypoolError };

export type AuthOutcome =
  /**
   * `allow`: the client's allow-lists, checked against the upstream its upgrade is routed to; absent: any.
   * `admit`: its limits; a session counts as one request in flight for as long as it is open.
   */
  | { readonly ok: true; readonly client: string; readonly allow?: AllowCheck; readonly admit?: (upstream: string, now: number) => SessionAdmission }
  | { readonly ok: false; readonly error: KeypoolError };
/** Client-token check, called before anything else; a refusal gets its error as the handshake's HTTP answer. */
export type Authenticate = (headers: IncomingHttpHeaders, remoteAddress: string | undefined) => AuthOutcome | Promise<AuthOutcome>;

export interface WebSocketProxyDeps {
  readonly config: Config;
  readonly pools: ReadonlyMap<string, KeyPool>;
  /** The upstreams whose prefix serves a URL (the HTTP routes' own rule, so both agree); the query's model picks the member. */
  readonly route: (url: string) => PrefixRoute | undefined;
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  readonly authenticate?: Authenticate;
  /** @default MAX_MESSAGE_BYTES */
  readonly maxMessageBytes?: number;
  /** @default HANDSHAKE_TIMEOUT_MS */
  readonly handshakeTimeoutMs?: number;
  /** Backpressure marks per direction. @default HIGH_WATER_BYTES, LOW_WATER_BYTES */
  readonly highWaterBytes?: number;
  readonly lowWaterBytes?: number;
}

/** An open session, as the admin view and tests see it. */
export interface SessionView {
  readonly id: string;
  readonly upstream: string;
  readonly key: string;
  readonly path: string;
  readonly client: string;
  readonly toClient: FlowStats;
  readonly toUpstream: FlowStats;
}

export interface WebSocketProxy {
  /** A reload: handshakes from now on use the new config and token check; open sessions go on. */
  reconfigure(config: Config, authenticate: Authenticate | undefined): void;
  /** The node:http server's 'upgrade' listener. */
  readonly upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Handshakes waiting on the upstream now. */
  readonly handshaking: number;
  sessions(): SessionView[];
  /** Set at shutdown: new upgrades get 503. */
  readonly closing: boolean;
  /** Refuses new upgrades, cancels handshakes in progress and closes every session with 1001; how many were open. */
  closeAll(reason: string): number;
  /** Told of every upgrade once it is over (refused, or its session closed). */
  onRequest(fn: RequestListener): void;
}
