// The fake upstream's vocabulary: what one scripted request should get back, and the server's options.
import type { IncomingHttpHeaders } from 'node:http';

/** Which header(s) a scripted 429 uses to say when to come back. */
export type RateLimitStyle = 'retry-after' | 'retry-after-ms' | 'retry-after-date' | 'x-ratelimit' | 'none';

export type Behavior =
  /** Endpoint-aware OpenAI-shaped success; a chat request with `stream: true` gets an SSE stream. */
  | { kind: 'ok'; delayMs?: number }
  /** An SSE `chat.completion.chunk` stream on any path. @default chunks 5, gapMs 0, delayMs 0 */
  | { kind: 'stream'; chunks?: number; gapMs?: number; delayMs?: number }
  /**
   * 429 `rate_limit_exceeded`; `ms` is told through the style's header(s).
   * @default style 'retry-after', ms 1000
   */
  | { kind: 'rate_limit'; style?: RateLimitStyle; ms?: number }
  /** 429 with OpenAI's `insufficient_quota` body: out of credit, not merely too fast. */
  | { kind: 'insufficient_quota' }
  | { kind: 'payment_required' }
  /** 401 `invalid_api_key`; the message never echoes the key. */
  | { kind: 'unauthorized' }
  /** 403 "insufficient permissions" (a restricted key): says nothing about whom it concerns. */
  | { kind: 'forbidden' }
  /** 403 naming the key's organisation as disabled: the key itself is unusable. */
  | { kind: 'key_revoked' }
  /** OpenAI's refusal of a model for this key's project: 403 (no access) or 404 (does not exist). @default status 404 */
  | { kind: 'model_not_found'; status?: 403 | 404 }
  /** OpenAI-shaped `server_error`. @default status 500 */
  | { kind: 'server_error'; status?: number }
  /** Never answers; the socket stays open until the client aborts or the server closes. */
  | { kind: 'hang' }
  /** Anything else. Without `body` the response is empty; with one, content-type defaults to JSON. */
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> };

export interface FakeUpstreamOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (ephemeral) */
  port?: number;
  /** Added before every ok/stream response. @default 0 */
  latencyMs?: number;
  /**
   * Per-key fixed window. Over it: 429 with retry-after-ms, retry-after and x-ratelimit-* headers;
   * within it, successes carry the x-ratelimit-* headers. Only ok/stream behaviours count against it.
   * @default undefined (unlimited)
   */
  rateLimit?: { requests: number; windowMs: number };
  /** Default behaviour per secret (the bearer token or x-api-key). @default {} (everyone gets `ok`) */
  keys?: Record<string, Behavior>;
  /** When set, any other key (or none) gets 401 invalid_api_key. @default undefined (any key) */
  acceptKeys?: string[];
  /** Record every request; the bench turns this off to keep memory flat. @default true */
  record?: boolean;
  /** Clock for the rate-limit window, `at` stamps and retry-after-date. @default Date.now */
  now?: () => number;
}

export interface RecordedRequest {
  method: string;
  /** Including the query string. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The exact bytes received. */
  body: Buffer;
  key: string | undefined;
  at: number;
}

export interface FakeUpstream {
  /** e.g. `http://127.0.0.1:54321` (no trailing slash, no /v1). */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Queue behaviours for a key, consumed one per request in order, then the key default / `ok`. */
  script(key: string, ...behaviors: Behavior[]): void;
  setDefault(key: string, behavior: Behavior): void;
  /** Clear recorded requests, scripts and rate windows (key defaults stay). */
  reset(): void;
  /** Close the server and destroy open sockets, hanging ones included. */
  close(): Promise<void>;
}
