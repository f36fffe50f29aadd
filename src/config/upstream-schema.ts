// The shape of one upstream in the config (its keys, auth, chains, circuit, sticky sessions, probe) and
// its defaults: with schema.ts, the only home of defaults.
import { z } from 'zod';
import { FORMATS, PROVIDERS } from './presets.js';
import { bool, boolean, num, number } from './schema-text.js';

/** How long a stream's head waits for its first event when commitOnContent is on without a time. */
export const COMMIT_ON_CONTENT_DEFAULT_MS = 3_000;

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

export const upstreamSchema = z.strictObject({
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
   * on for providers known to put errors inside 200 streams (anthropic, openrouter); `true` waits
   * COMMIT_ON_CONTENT_DEFAULT_MS.
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

export type UpstreamInput = z.output<typeof upstreamSchema>;
