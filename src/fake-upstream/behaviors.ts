// The fake upstream's vocabulary: what one scripted request should get back, and the server's options.
// Every behaviour means the same thing on every provider personality; each personality answers it in
// its provider's own format (see the table in README, "The fake upstream").
import type { IncomingHttpHeaders } from 'node:http';

/** The providers the fake can play: their paths, auth, bodies, streams and errors. */
export const PROVIDERS = ['openai', 'anthropic', 'gemini', 'azure', 'openrouter'] as const;
export type Provider = (typeof PROVIDERS)[number];

/** Which header(s) a scripted 429 uses to say when to come back. */
export const RATE_LIMIT_STYLES = [
  'retry-after',
  'retry-after-ms',
  'retry-after-date',
  'x-ratelimit',
  'anthropic-ratelimit',
  'x-ms-retry-after-ms',
  'none',
] as const;
export type RateLimitStyle = (typeof RATE_LIMIT_STYLES)[number];

export type Behavior =
  /**
   * Endpoint-aware success in the personality's format; a request that asks for a stream (`stream: true`,
   * Gemini's `:streamGenerateContent`) gets one.
   */
  | { kind: 'ok'; delayMs?: number }
  /**
   * The personality's stream on any path (OpenAI `chat.completion.chunk`s, Anthropic message events,
   * Gemini chunks). With `gapMs`, the head goes out at once and every event waits `gapMs`.
   * @default chunks 5, gapMs 0, delayMs 0
   */
  | { kind: 'stream'; chunks?: number; gapMs?: number; delayMs?: number }
  /**
   * The provider's 429 for going too fast; `ms` is told through the style's header(s), or (style
   * omitted) the way the provider tells it: OpenAI and OpenRouter `retry-after`; Anthropic `retry-after`
   * and `anthropic-ratelimit-*`; Azure `retry-after`, `retry-after-ms` and `x-ms-retry-after-ms`;
   * Gemini no header, `retryDelay` in the body.
   * @default style the provider's, ms 1000
   */
  | { kind: 'rate_limit'; style?: RateLimitStyle; ms?: number }
  /**
   * Gemini's 429 `RESOURCE_EXHAUSTED` (`QuotaFailure` + `RetryInfo.retryDelay` of `ms`); `daily` names a
   * per-day quota, which a short `retryDelay` does not lift. Elsewhere the provider's closest 429.
   * @default daily false, ms 1000
   */
  | { kind: 'resource_exhausted'; daily?: boolean; ms?: number }
  /** Out of credit, not merely too fast (OpenAI 429 `insufficient_quota`; see README for the others). */
  | { kind: 'insufficient_quota' }
  /** Billing refused (OpenRouter's 402 insufficient credits, Anthropic's 402 billing_error). */
  | { kind: 'payment_required' }
  /** The provider's answer to an invalid key (Gemini: 400 API_KEY_INVALID); never echoes the key. */
  | { kind: 'unauthorized' }
  /** 403 "insufficient permissions" (a restricted key): says nothing about whom it concerns. */
  | { kind: 'forbidden' }
  /** 403 naming the key's organisation as disabled: the key itself is unusable. */
  | { kind: 'key_revoked' }
  /** OpenAI's refusal of a model for this key's project: 403 (no access) or 404 (does not exist). @default status 404 */
  | { kind: 'model_not_found'; status?: 403 | 404 }
  /** The provider's internal error (Anthropic `api_error`, Gemini `INTERNAL`). @default status 500 */
  | { kind: 'server_error'; status?: number }
  /** Busy for everyone: Anthropic 529 `overloaded_error`, Gemini 503 `UNAVAILABLE`, others 503. */
  | { kind: 'overloaded' }
  /**
   * 200 and a stream whose event number `after` (0: the first) is the provider's error: Anthropic
   * `event: error` with `overloaded_error`, OpenRouter's error chunk, OpenAI/Azure `data: {"error":…}`,
   * Gemini `data: {"error":…}`. `gapMs` as for `stream`.
   * @default after 0, gapMs 0
   */
  | { kind: 'error_in_stream'; after?: number; gapMs?: number }
  /** Never answers; the socket stays open until the client aborts or the server closes. */
  | { kind: 'hang' }
  /** Anything else. Without `body` the response is empty; with one, content-type defaults to JSON. */
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> };

export interface FakeUpstreamOptions {
  /** Which provider the server plays: its paths, auth header or query parameter, formats. @default 'openai' */
  provider?: Provider;
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
  /**
   * Default behaviour per secret, read where the personality reads keys (OpenAI/OpenRouter bearer or
   * x-api-key, Anthropic x-api-key or bearer, Azure api-key or bearer, Gemini x-goog-api-key or `?key=`).
   * @default {} (everyone gets `ok`)
   */
  keys?: Record<string, Behavior>;
  /** When set, any other key (or none) gets the provider's refusal (401; Gemini 400/403). @default undefined (any key) */
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
  /** The credential as the personality reads it (header or Gemini's `key` parameter). */
  key: string | undefined;
  at: number;
}

export interface FakeUpstream {
  /** e.g. `http://127.0.0.1:54321` (no trailing slash, no /v1). */
  readonly url: string;
  readonly provider: Provider;
  readonly requests: RecordedRequest[];
  /** Queue behaviours for a key, consumed one per request in order, then the key default / `ok`. */
  script(key: string, ...behaviors: Behavior[]): void;
  setDefault(key: string, behavior: Behavior): void;
  /** Clear recorded requests, scripts and rate windows (key defaults stay). */
  reset(): void;
  /** Close the server and destroy open sockets, hanging ones included. */
  close(): Promise<void>;
}
