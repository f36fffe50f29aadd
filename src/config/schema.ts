// The config document's shape and every default keypool has. Nothing else in src/ may invent a default.
import { z } from 'zod';
import { FORMATS, PROVIDERS } from './presets.js';

const MiB = 1024 * 1024;

// Number and boolean fields also take text holding one, because `${VAR}` expansion (load.ts) leaves text:
// `port: ${PORT:-8787}` must work. Only these fields convert: a key that is all digits stays a string.
// Complaints say what was expected and never echo the value (a secret pasted into the wrong field).

/** Decimal text, with an optional exponent; no hex, no Infinity, no empty string. */
const NUMBER_TEXT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

function numberFromText(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const t = v.trim();
  return NUMBER_TEXT.test(t) ? Number(t) : v;
}

function booleanFromText(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const t = v.trim().toLowerCase();
  return t === 'true' ? true : t === 'false' ? false : v;
}

function textIsNot(what: string) {
  return (issue: { readonly code?: string; readonly input?: unknown }): string | undefined => {
    if (issue.code !== 'invalid_type' || typeof issue.input !== 'string') return undefined;
    return issue.input.trim() === ''
      ? `expected ${what}, got an empty value (an empty variable?)`
      : `expected ${what}, got text that is not one`;
  };
}

const number = () => z.number({ error: textIsNot('a number') });
const boolean = () => z.boolean({ error: textIsNot('true or false') });
const num = <T extends z.ZodType>(schema: T) => z.preprocess(numberFromText, schema);
const bool = <T extends z.ZodType>(schema: T) => z.preprocess(booleanFromText, schema);

/** A key as written in YAML: a bare secret, or `{ name, key }`. */
const keyEntrySchema = z.union(
  [
    z.string(),
    z.strictObject({
      /** Stable name used in logs, headers and admin output. Default: `<upstream>-<n>`. */
      name: z.string().min(1).regex(/^[A-Za-z0-9._:-]+$/, 'use letters, digits, . _ : -').optional(),
      key: z.string(),
      /** Share for the `weighted` strategy. @default 1 */
      weight: num(number().positive()).default(1),
      /** Keys of one organisation share its limits: a rate limit or credit stop on one cools the group. */
      group: z.string().min(1).optional(),
      /** This key's own base URL (another Azure resource or region); rotated like the others. */
      baseUrl: z.url({ protocol: /^https?$/ }).optional(),
      /** Local limits, enforced before the upstream would answer 429. */
      rpm: num(number().int().positive()).optional(),
      tpm: num(number().int().positive()).optional(),
      maxConcurrent: num(number().int().positive()).optional(),
    }),
  ],
  {
    // A key written unquoted in YAML may parse as a number (`- 0123` is 123): never turn it back into text.
    error: (issue) =>
      issue.code !== 'invalid_union'
        ? undefined
        : typeof issue.input === 'number' || typeof issue.input === 'boolean'
          ? 'a key must be text: quote it in YAML when it looks like a number'
          : 'expected a key: text, or { key, name, weight, group, baseUrl, rpm, tpm, maxConcurrent }',
  },
);

export const STRATEGIES = ['round_robin', 'least_inflight', 'random', 'weighted', 'fill_first', 'headroom'] as const;

/** One step of a fallback chain: another upstream (its own pool), and optionally the model to ask it for. */
const fallbackSchema = z.strictObject({
  upstream: z.string().min(1),
  /** Rewritten in the JSON body's top-level `model`; the rest of the body is sent byte for byte. */
  model: z.string().min(1).optional(),
});

const upstreamSchema = z.strictObject({
  /** Upstream name; also the stem of derived key names. */
  name: z.string().min(1).regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, . _ -'),
  /**
   * Sets baseUrl, prefix, auth style, required headers, error format and how failures are read, from
   * src/config/presets.ts; every one of them can be set here too. @default "openai"
   */
  provider: z.enum(PROVIDERS).default('openai'),
  /** Client path prefix that maps to `baseUrl`. Default: the provider's (`/v1` for openai, `/anthropic`, ...). */
  prefix: z
    .string()
    .regex(/^\/([A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*)?$/, 'a path such as /v1 (no trailing slash)')
    .optional(),
  /** What the prefix maps to, e.g. https://api.openai.com/v1. Default: the provider's (required for azure, openai-compatible). */
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
  /**
   * Header that carries the pool key. `authorization` sends `Bearer <key>`; any other name
   * (e.g. `x-api-key`) sends the bare key. Default: the provider's.
   */
  authHeader: z.string().toLowerCase().regex(/^[a-z0-9-]+$/).optional(),
  /** Send the pool key as this query parameter instead of a header (some Gemini deployments). */
  authQuery: z.string().regex(/^[A-Za-z0-9_.-]+$/).optional(),
  /** Headers sent to the upstream when the client did not send them (the anthropic preset adds anthropic-version). */
  headers: z.record(z.string().toLowerCase().regex(/^[a-z0-9-]+$/), z.string()).optional(),
  /** The shape of keypool's own errors on this upstream. Default: the provider's. */
  errorFormat: z.enum(FORMATS).optional(),
  /**
   * For streams: hold the response head until the first event (at most `maxWaitMs`) and, if that event is
   * an error, treat it like the matching status (rotate, retry) with nothing sent to the client. Default:
   * on for providers known to put errors inside 200 streams (anthropic, openrouter).
   */
  commitOnContent: z.union([bool(boolean()), z.strictObject({ maxWaitMs: num(number().int().positive()) })]).optional(),
  /**
   * Models this upstream serves (names or globs). Several upstreams may then share one prefix: a request
   * goes to the one that serves its model, and GET <prefix>/models lists them all. Absent: any model.
   */
  models: z.array(z.string().min(1)).min(1).optional(),
  /**
   * Where a request goes when this upstream cannot serve it (every key cooling past retry.maxWaitMs,
   * disabled or out of credit, the budget spent on server faults, the circuit open): an ordered list of
   * other upstreams, each optionally with another model name (rewritten in the body). Absent: none.
   */
  fallbacks: z.array(fallbackSchema).min(1).optional(),
  /** Per model (names or globs): a chain for those models instead of `fallbacks`. */
  modelFallbacks: z.record(z.string().min(1), z.array(fallbackSchema).min(1)).optional(),
  /** Per error class: where a request goes after that answer. Absent: none (contentPolicy is never retried). */
  errorFallbacks: z
    .strictObject({
      /** A 400 saying the prompt is longer than the model's window: try a model with a larger one. */
      contextLengthExceeded: z.array(fallbackSchema).min(1).optional(),
    })
    .optional(),
  /**
   * Circuit breaking: after `failures` server faults (5xx, connection errors, headers timeouts) within
   * `windowMs`, the upstream is skipped for `openMs` (requests go straight to their fallback), then one
   * probe request decides. Absent: off.
   */
  circuit: z
    .strictObject({
      /** @default 5 */
      failures: num(number().int().positive()).default(5),
      /** @default 10000 */
      windowMs: num(number().int().positive()).default(10_000),
      /** @default 30000 */
      openMs: num(number().int().positive()).default(30_000),
    })
    .optional(),
  keys: z.array(keyEntrySchema).default([]),
  /** How a key is chosen among those available. @default "round_robin" */
  strategy: z.enum(STRATEGIES).default('round_robin'),
  /**
   * Opt-in sticky sessions: requests with the same session id go to the same key while it is healthy,
   * so provider prompt caches keep hitting. Absent: off.
   */
  sticky: z
    .strictObject({
      /** Header carrying the session id. @default "x-session-id" */
      header: z.string().toLowerCase().default('x-session-id'),
      /** JSON body fields used when the header is absent, in order. @default ["prompt_cache_key", "user"] */
      bodyFields: z.array(z.string().min(1)).default(['prompt_cache_key', 'user']),
      /** Sessions remembered (least recently used are forgotten). @default 10000 */
      maxSessions: num(number().int().positive()).default(10_000),
    })
    .optional(),
  /** Environment variable holding a comma/whitespace separated list of keys. */
  // A name, not the keys: a pasted list of keys must not be echoed back in the "is X set?" hint.
  keysFromEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'the name of an environment variable (letters, digits, _), not the keys themselves')
    .optional(),
  /** File with one key per line (blank lines and `#` comments ignored). */
  keysFromFile: z.string().min(1).optional(),
  /**
   * The cheap request `keypool check --probe` and the health prober send with each key, to `baseUrl` +
   * `path`. A JSON `body` with a `model` names the model a refusal concerns. @default GET /models
   */
  probe: z
    .strictObject({
      /** @default "GET" */
      method: z.enum(['GET', 'HEAD', 'POST']).default('GET'),
      /** @default "/models" */
      path: z.string().regex(/^\/[^\s?#]*(\?[^\s#]*)?$/, 'a path such as /models').default('/models'),
      /** Sent as application/json, e.g. a one-token chat completion. Absent: no body. */
      body: z.string().optional(),
    })
    .prefault({}),
});

/** A client allowed to use the proxy routes (see src/clients/). */
const clientSchema = z.strictObject({
  /** The client's identity for fairness, logs and metrics. */
  name: z.string().min(1).regex(/^[A-Za-z0-9._:@-]+$/, 'use letters, digits, . _ : @ -'),
  /** Its token (use `${VAR}`); or `tokenFile`. At least 16 characters. */
  token: z.string().optional(),
  /** File holding the token (e.g. /run/secrets/agent-a); surrounding white space is ignored. */
  tokenFile: z.string().min(1).optional(),
  /** Requests in flight at once; more get 429 keypool_client_limit. Absent: no limit. */
  maxConcurrent: num(number().int().positive()).optional(),
  /** Requests per minute (fixed window); more get 429 keypool_client_limit. Absent: no limit. */
  rpm: num(number().int().positive()).optional(),
  /** Upstream names it may use. Absent: all. */
  upstreams: z.array(z.string().min(1)).optional(),
  /** Models it may ask for, as globs (`gpt-4o*`). Absent: any. */
  models: z.array(z.string().min(1)).optional(),
});

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      /** @default "127.0.0.1": loopback only; use 0.0.0.0 in a container. */
      host: z.string().min(1).default('127.0.0.1'),
      /** @default 8787 */
      port: num(number().int().min(0).max(65535)).default(8787),
      /** Largest request body buffered for replay; larger ones get 413. @default 52428800 (50 MiB) */
      bodyLimitBytes: num(number().int().positive()).default(50 * MiB),
      /**
       * On SIGTERM/SIGINT, how long requests and streams in flight may go on before they are cut (a stream
       * then gets a final error event). @default 10000
       */
      shutdownGraceMs: num(number().int().min(0)).default(10_000),
      /**
       * Listen on a non-loopback host with no `clients` configured. Off, keypool refuses to start that way:
       * anyone who can reach the port could spend the pool's keys. @default false
       */
      allowUnauthenticated: bool(boolean()).default(false),
    })
    .prefault({}),
  /** Named client tokens. Absent: the proxy routes take any request (fine on loopback). */
  clients: z.array(clientSchema).min(1, 'list at least one client, or leave clients out').optional(),
  admin: z
    .strictObject({
      /** Token for /admin and /metrics (use `${VAR}`). Absent (and no tokenFile): they answer loopback clients only. */
      token: z.string().optional(),
      /** File holding that token. */
      tokenFile: z.string().min(1).optional(),
    })
    .prefault({}),
  log: z
    .strictObject({
      /** @default "info" */
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  upstreams: z.array(upstreamSchema).min(1, 'at least one upstream is required'),
  retry: z
    .strictObject({
      /** Attempts allowed once every key has been tried or is cooling (walking the pool is free). @default 3 */
      maxRetries: num(number().int().min(0).max(100)).default(3),
      /** Total time one request may spend waiting for a cooling key. @default 30000 */
      maxWaitMs: num(number().int().min(0)).default(30_000),
      /** Whole-request deadline, from arrival to the last response byte. @default 600000 */
      timeoutMs: num(number().int().positive()).default(600_000),
      /** Time allowed to open a TCP/TLS connection to the upstream. @default 10000 */
      connectTimeoutMs: num(number().int().positive()).default(10_000),
      /**
       * Longest wait for the response head of a non-streaming request once it is on the wire; past it the
       * attempt is cancelled and the request fails over (charged). A non-streaming completion's head comes
       * only when the whole answer is done, so this must outlast a slow model's longest answer. 0: off.
       * @default 300000
       */
      headersTimeoutMs: num(number().int().min(0)).default(300_000),
      /** The same for requests with `"stream": true`, whose head comes before the first token. 0: off. @default 60000 */
      streamHeadersTimeoutMs: num(number().int().min(0)).default(60_000),
      /**
       * Longest silence inside a response body once it is being delivered; past it the stream is cut and
       * an SSE client gets a final error event. Reasoning models can think for minutes between chunks. 0: off.
       * @default 300000
       */
      idleTimeoutMs: num(number().int().min(0)).default(300_000),
      /**
       * Send a POST or PATCH again (to another key) after the upstream may have received all of it and the
       * connection broke before its answer. Off: such a request could run, and be billed, twice. @default false
       */
      replayAfterSend: bool(boolean()).default(false),
      /**
       * Pacing of charged attempts: the n-th waits at least min(backoffMaxMs, backoffBaseMs·2^(n-1)),
       * jittered to 50-100 %, besides waiting for a key. The free walk over untried keys is never slowed.
       * @default 500
       */
      backoffBaseMs: num(number().int().min(0)).default(500),
      /** Ceiling of that backoff. @default 8000 */
      backoffMaxMs: num(number().int().min(0)).default(8_000),
    })
    .prefault({}),
  cooldown: z
    .strictObject({
      /** First cooldown after a 429 that names no reset time; doubles per consecutive 429. @default 1000 */
      backoffBaseMs: num(number().int().positive()).default(1_000),
      /** Ceiling of that backoff. @default 60000 */
      backoffMaxMs: num(number().int().positive()).default(60_000),
      /** Cooldown for a key that is out of credit (402, `insufficient_quota`). @default 3600000 */
      outOfCreditMs: num(number().int().positive()).default(3_600_000),
      /** Ceiling on any cooldown an upstream header asks for. @default 3600000 */
      maxMs: num(number().int().positive()).default(3_600_000),
      /**
       * A key the upstream says may not use a model (403/404 "does not have access to model") is skipped for
       * that model this long; other keys and models are not affected. @default 3600000
       */
      modelUnavailableMs: num(number().int().positive()).default(3_600_000),
      /**
       * A key the upstream rejects itself (401, or a 403 that blames the key or its organisation) is
       * disabled this long, in memory, the state file and Redis alike; then it is tried again. @default 86400000
       */
      disabledMs: num(number().int().positive()).default(86_400_000),
      /** A cooldown at least this long ends with one probe request before the key takes full traffic. @default 60000 */
      probeAfterMs: num(number().int().positive()).default(60_000),
    })
    .prefault({}),
  state: z
    .strictObject({
      /**
       * File that keeps cooldowns, disabled keys and usage counters across restarts (no secrets: keys by
       * name and fingerprint). Relative paths are from the working directory. Absent: memory only.
       */
      file: z.string().min(1).optional(),
      /** A change is written at most this long after it happens. @default 1000 */
      flushDelayMs: num(number().int().min(0)).default(1_000),
      /**
       * Share pool state between replicas through Redis: cooldowns, disabled keys, in-flight slots,
       * rpm/tpm windows, the upstream's rate-limit buckets, round-robin order, usage counters.
       * Absent: each process alone.
       */
      redis: z
        .strictObject({
          url: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL'),
          /** Prefix of every key and channel keypool uses. @default "keypool:" */
          prefix: z.string().default('keypool:'),
          /**
           * A replica not heard from for this long is presumed dead: the in-flight slots it held are freed
           * for the others. Heartbeats go out five times per period. @default 5000
           */
          replicaTimeoutMs: num(number().int().min(100)).default(5_000),
        })
        .optional(),
    })
    .prefault({}),
  health: z
    .strictObject({
      /**
       * How often the running proxy probes its disabled keys (401, revoked) and model refusals with
       * `upstreams[].probe`, bringing back those that answer well. 0: off. @default 0
       */
      probeIntervalMs: num(number().int().min(0)).refine((ms) => ms === 0 || ms >= 1000, '0 (off) or at least 1000').default(0),
      /** Longest one probe may take (`keypool check --probe` too). @default 10000 */
      probeTimeoutMs: num(number().int().positive()).default(10_000),
    })
    .prefault({}),
  queue: z
    .strictObject({
      /** Requests that may wait for a key at once, per upstream; beyond it: 429. @default 1000 */
      maxSize: num(number().int().min(0)).default(1_000),
      /** Header naming the client for fair queueing; else the remote address. @default "x-agent-id" */
      clientHeader: z.string().toLowerCase().default('x-agent-id'),
      /**
       * While a streaming request waits, send 200 + SSE comments so the client does not time out. The status
       * is then committed: a later failure arrives as an SSE `error` event, not an HTTP status. @default false
       */
      streamKeepAlive: bool(boolean()).default(false),
      /** Interval of those comments. @default 15000 */
      keepAliveIntervalMs: num(number().int().positive()).default(15_000),
    })
    .prefault({}),
});

export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type UpstreamInput = z.output<typeof upstreamSchema>;
