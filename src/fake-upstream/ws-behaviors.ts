// The WebSocket fake's vocabulary: how it answers one handshake (per key, scripted or by default), and
// what it records. Validated at the door so a typo fails where it was written; errors never name a key.
import type { IncomingHttpHeaders } from 'node:http';
import { z } from 'zod';
import type { RateLimitStyle } from './behaviors.js';

export type WsHandshake =
  /** 101, then the path's protocol (Responses, Realtime, or echo). `delayMs` holds the answer back. */
  | { kind: 'accept'; delayMs?: number }
  /** 429 `rate_limit_exceeded`, `ms` told in the style's header(s). @default style 'retry-after', ms 1000 */
  | { kind: 'rate_limit'; style?: RateLimitStyle; ms?: number }
  | { kind: 'insufficient_quota' }
  /** 401 `invalid_api_key`. */
  | { kind: 'unauthorized' }
  /** 403 that says nothing about whom it concerns. */
  | { kind: 'forbidden' }
  /** 403 naming the key's organisation as disabled. */
  | { kind: 'key_revoked' }
  /** @default status 500 */
  | { kind: 'server_error'; status?: number }
  /** Never answers the handshake; the socket stays open until the client leaves or the fake closes. */
  | { kind: 'hang' }
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> };

const ms = z.int().min(0);
const httpStatus = z.int().min(200).max(599);

export const wsHandshakeSchema: z.ZodType<WsHandshake> = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('accept'), delayMs: ms.optional() }),
  z.strictObject({
    kind: z.literal('rate_limit'),
    style: z.enum(['retry-after', 'retry-after-ms', 'retry-after-date', 'x-ratelimit', 'none']).optional(),
    ms: ms.optional(),
  }),
  z.strictObject({ kind: z.literal('insufficient_quota') }),
  z.strictObject({ kind: z.literal('unauthorized') }),
  z.strictObject({ kind: z.literal('forbidden') }),
  z.strictObject({ kind: z.literal('key_revoked') }),
  z.strictObject({ kind: z.literal('server_error'), status: httpStatus.optional() }),
  z.strictObject({ kind: z.literal('hang') }),
  z.strictObject({
    kind: z.literal('status'),
    status: httpStatus,
    body: z.string().optional(),
    headers: z.record(z.string(), z.string()).optional(),
  }),
]);

/** A validated copy of `value`, or a TypeError naming `where` (never the key). */
export function parseWsHandshake(value: unknown, where: string): WsHandshake {
  const result = wsHandshakeSchema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(behaviour)'}: ${i.message}`).join('; ');
  throw new TypeError(`fake-upstream (websocket): invalid handshake behaviour in ${where}: ${issues}`);
}

/** Where the key of a handshake was found. */
export type KeySource = 'authorization' | 'x-api-key' | 'api-key' | 'subprotocol';

export interface RecordedHandshake {
  /** Including the query string. */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly key: string | undefined;
  readonly keySource: KeySource | undefined;
  /** Subprotocols offered, in order. */
  readonly protocols: readonly string[];
  /** 101 when accepted, else the status answered; 0 while unanswered (hang). */
  status: number;
  readonly at: number;
}

export interface ReceivedMessage {
  readonly data: Buffer;
  readonly isBinary: boolean;
}

/** A flood the client asked for (`fake.flood`): how far it got, and whether it waits for the socket. */
export interface FloodState {
  readonly count: number;
  sent: number;
  /** True while the fake waits for its socket to drain (the other end is not reading). */
  blocked: boolean;
}

export interface WsFakeSession {
  readonly path: string;
  readonly key: string | undefined;
  /** The subprotocol the fake chose ('' for none). */
  readonly protocol: string;
  readonly received: ReceivedMessage[];
  /** Payloads of pongs received (answers to `ping`). */
  readonly pongs: Buffer[];
  /** Payloads of pings received (the fake answers them itself). */
  readonly pings: Buffer[];
  /** Set once closed: the code and reason received (1006: dropped without a close frame). */
  closed: { readonly code: number; readonly reason: string } | undefined;
  flood: FloodState | undefined;
  send(data: string | Buffer, binary?: boolean): void;
  ping(data?: Buffer): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  /** Stops reading from the socket (a slow upstream), until resume(). */
  pause(): void;
  resume(): void;
}

export interface WsFakeOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (ephemeral) */
  port?: number;
  /** Default handshake answer per secret. @default {} (everyone is accepted) */
  keys?: Record<string, WsHandshake>;
  /** When set, any other key (or none) gets 401 invalid_api_key. @default undefined (any key) */
  acceptKeys?: string[];
  /** Text deltas per response of the Responses and Realtime protocols. @default 3 */
  deltas?: number;
  /** Clock for `at` stamps and retry-after-date. @default Date.now */
  now?: () => number;
}

export interface WsFakeControl {
  readonly handshakes: RecordedHandshake[];
  readonly sessions: WsFakeSession[];
  /** TCP connections open now (handshakes and sessions). */
  readonly connections: number;
  /** Queue handshake answers for a key, one per handshake, then the key default / accept. */
  script(key: string, ...behaviors: WsHandshake[]): void;
  setDefault(key: string, behavior: WsHandshake): void;
  /** Clears records and scripts (key defaults stay). */
  reset(): void;
}

export interface WsFakeUpstream extends WsFakeControl {
  /** e.g. `http://127.0.0.1:54321` (no /v1). */
  readonly url: string;
  /** Closes the server and destroys every socket. */
  close(): Promise<void>;
}
