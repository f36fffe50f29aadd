// The config document's shape and every default keypool has (with upstream-schema.ts, one upstream's).
// Nothing else in src/ may invent a default.
import { z } from 'zod';
import { bool, boolean, num, number } from './schema-text.js';
import { upstreamSchema } from './upstream-schema.js';

export { STRATEGIES, type UpstreamInput } from './upstream-schema.js';

const MiB = 1024 * 1024;

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
