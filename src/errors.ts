// The one registry of errors keypool itself produces: stable code, HTTP status, OpenAI error type.
// The wire format is OpenAI's `{"error":{"message","type","param","code"}}` so SDKs surface it as usual.

interface ErrorSpec {
  /** HTTP status; `undefined` where it is the status the upstream last gave. */
  readonly status: number | undefined;
  /** OpenAI's `error.type`. */
  readonly type: string;
  /** One line for docs/errors.md and the README. */
  readonly summary: string;
}

export const ERRORS = {
  keypool_invalid_request: {
    status: 400,
    type: 'invalid_request_error',
    summary: 'The request could not be read (bad framing, bad header).',
  },
  keypool_body_too_large: {
    status: 413,
    type: 'invalid_request_error',
    summary: 'The request body is larger than `server.bodyLimitBytes`.',
  },
  keypool_unauthorized: {
    status: 401,
    type: 'invalid_request_error',
    summary: 'Clients are configured and the request carried no known token (`Authorization: Bearer <token>` or `x-api-key`). Carries `x-should-retry: false`.',
  },
  keypool_client_forbidden: {
    status: 403,
    type: 'invalid_request_error',
    summary: 'The client may not use this upstream or model (`clients[].upstreams`, `clients[].models`). Carries `x-should-retry: false`.',
  },
  keypool_client_limit: {
    status: 429,
    type: 'rate_limit_error',
    summary: 'The client is at its own limit (`clients[].maxConcurrent` or `clients[].rpm`); `Retry-After` says when it may send again.',
  },
  keypool_invalid_path: {
    status: 400,
    type: 'invalid_request_error',
    summary:
      'The request target could not be forwarded safely: a `.` or `..` segment in any encoding, a path not beginning with the prefix as written, an absolute-form target naming another host, asterisk-form, or characters a target may not carry.',
  },
  keypool_method_not_allowed: {
    status: 405,
    type: 'invalid_request_error',
    summary: 'The method is not forwarded (TRACE, CONNECT and any other than GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS). `Allow` lists those.',
  },
  keypool_request_timeout: {
    status: 408,
    type: 'invalid_request_error',
    summary: "The client did not send the request's head or body in time (node's `headersTimeout` / `requestTimeout`).",
  },
  keypool_headers_too_large: {
    status: 431,
    type: 'invalid_request_error',
    summary: 'The request has more than 100 header fields, or a header block larger than node\'s `maxHeaderSize` (16 KiB).',
  },
  keypool_route_not_found: {
    status: 404,
    type: 'invalid_request_error',
    summary: 'The path is under no configured upstream prefix.',
  },
  keypool_model_not_served: {
    status: 404,
    type: 'invalid_request_error',
    summary: 'The upstreams sharing this prefix each list the models they serve, and none lists the model asked for.',
  },
  keypool_pool_exhausted: {
    status: undefined,
    type: 'rate_limit_error',
    summary:
      'Every key is rate-limited or out of credit and the retry budget, `retry.maxWaitMs` or the deadline ran out. Status is the last upstream status (429 or 402); `Retry-After` says when the earliest key recovers.',
  },
  keypool_queue_full: {
    status: 429,
    type: 'rate_limit_error',
    summary: 'No key can take the request now and the waiting room is full (`queue.maxSize`). `Retry-After` says when to come back.',
  },
  keypool_upstream_error: {
    status: undefined,
    type: 'server_error',
    summary: 'The upstream kept answering 5xx until the retry budget was spent. Status is the last upstream status.',
  },
  keypool_no_usable_keys: {
    status: 503,
    type: 'server_error',
    summary:
      'Every key of the upstream is disabled (the upstream rejected the key itself: 401, or a 403 naming the key or its organisation). Disabled keys are tried again after `cooldown.disabledMs`. Carries `x-should-retry: false`.',
  },
  keypool_upstream_unreachable: {
    status: 502,
    type: 'server_error',
    summary: 'The upstream could not be reached (connection refused, reset, DNS, TLS) on every attempt the budget allowed.',
  },
  keypool_upstream_timeout: {
    status: 504,
    type: 'server_error',
    summary:
      'The request deadline (`retry.timeoutMs`) passed before the upstream answered, or no try got a response head within `retry.headersTimeoutMs` (`retry.streamHeadersTimeoutMs` for streams) before the budget was spent.',
  },
  keypool_upstream_may_have_processed: {
    status: 502,
    type: 'server_error',
    summary:
      'The connection broke after the whole POST/PATCH was sent and before any answer: the upstream may have run (and billed) it, so keypool did not send it again (`retry.replayAfterSend`). Carries `x-should-retry: false`.',
  },
  keypool_stream_interrupted: {
    status: 502,
    type: 'server_error',
    summary:
      'Sent as the last SSE event when a stream that had started was cut (the upstream went quiet past `retry.idleTimeoutMs`, broke off, or the deadline passed): the answer is incomplete.',
  },
  keypool_circuit_open: {
    status: 503,
    type: 'server_error',
    summary:
      'The upstream failed too often lately (its circuit is open, `upstreams[].circuit`) and no fallback could serve the request. `Retry-After` says when it is tried again.',
  },
  keypool_shutting_down: {
    status: 503,
    type: 'server_error',
    summary: 'keypool is stopping (SIGTERM/SIGINT): requests already in flight finish, new ones get this. Retry on another replica or shortly.',
  },
  keypool_admin_unauthorized: {
    status: 401,
    type: 'invalid_request_error',
    summary:
      'The admin API (`/admin/*`) or `/metrics` was asked without the admin token (`admin.token`, as `Authorization: Bearer` or `x-api-key`), or, with no admin token configured, from a non-loopback address.',
  },
  keypool_admin_key_not_found: {
    status: 404,
    type: 'invalid_request_error',
    summary: 'An admin key action named a key no upstream has (or `?upstream=` names no upstream with it).',
  },
  keypool_internal_error: {
    status: 500,
    type: 'server_error',
    summary: 'A bug in keypool. The log line for the request has the details.',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export interface KeypoolErrorOptions {
  /** Required for codes whose registry status is the upstream's. */
  status?: number;
  headers?: Readonly<Record<string, string>>;
  cause?: unknown;
}

/** An error keypool answers a client with. `message` must never contain a secret. */
export class KeypoolError extends Error {
  override readonly name = 'KeypoolError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: string;
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, message: string, options: KeypoolErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const spec: ErrorSpec = ERRORS[code];
    this.code = code;
    this.status = options.status ?? spec.status ?? 502;
    this.type = code === 'keypool_pool_exhausted' && this.status === 402 ? 'insufficient_quota' : spec.type;
    this.headers = options.headers ?? {};
  }

  /**
   * The error in the wire format of the upstream it concerns, so each provider's SDK surfaces it as its
   * own: OpenAI's `{"error":{message,type,param,code}}`, Anthropic's `{"type":"error","error":{type,message}}`,
   * Google's `{"error":{code,message,status}}`. keypool's stable code rides along in each.
   */
  toBody(format: ErrorFormat = 'openai'): unknown {
    switch (format) {
      case 'anthropic':
        return { type: 'error', error: { type: anthropicType(this.status), message: this.message, code: this.code } };
      case 'gemini':
        return {
          error: {
            code: this.status,
            message: this.message,
            status: googleStatus(this.status),
            details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: this.code, domain: 'keypool' }],
          },
        };
      default:
        return { error: { message: this.message, type: this.type, param: null, code: this.code } } satisfies OpenAIErrorBody;
    }
  }
}

/** The wire formats keypool speaks its own errors in (config/presets.ts). */
export type ErrorFormat = 'openai' | 'anthropic' | 'gemini';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: null; code: string };
}

/** Anthropic's error types by status (https://docs.anthropic.com/en/api/errors). */
function anthropicType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 402) return 'billing_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 413) return 'request_too_large';
  if (status === 429) return 'rate_limit_error';
  if (status === 529 || status === 503) return 'overloaded_error';
  if (status === 504) return 'timeout_error';
  return status < 500 ? 'invalid_request_error' : 'api_error';
}

/** google.rpc.Code names by HTTP status (https://cloud.google.com/apis/design/errors#handling_errors). */
function googleStatus(status: number): string {
  if (status === 400 || status === 405 || status === 413 || status === 431) return 'INVALID_ARGUMENT';
  if (status === 401) return 'UNAUTHENTICATED';
  if (status === 402 || status === 429) return 'RESOURCE_EXHAUSTED';
  if (status === 403) return 'PERMISSION_DENIED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 408 || status === 504) return 'DEADLINE_EXCEEDED';
  if (status === 503) return 'UNAVAILABLE';
  return status < 500 ? 'FAILED_PRECONDITION' : 'INTERNAL';
}

/** A config document that cannot be used; `message` names the field path. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'KEYPOOL_CONFIG_INVALID';
  constructor(
    message: string,
    readonly problems: readonly string[] = [message],
  ) {
    super(message);
  }
}
