// What some providers say in an error body rather than in its status or headers. Pure; each rule cites
// the provider's documented shape.
//   Gemini: 429 RESOURCE_EXHAUSTED with google.rpc.RetryInfo {retryDelay: "37s"} and QuotaFailure
//   violations whose quotaId names the window (…PerDay…); 400 API_KEY_INVALID
//   (https://ai.google.dev/gemini-api/docs/troubleshooting, https://cloud.google.com/apis/design/errors).
//   Anthropic: 400 invalid_request_error "Your credit balance is too low to access the Anthropic API"
//   (https://docs.anthropic.com/en/api/errors).

/** Longest body text a rule looks at: error bodies are short. */
const SCAN_CHARS = 16 * 1024;

function head(body: string): string {
  return body.length > SCAN_CHARS ? body.slice(0, SCAN_CHARS) : body;
}

/** Google's RetryInfo `retryDelay` ("37s", "1.5s"), in ms, capped; undefined when absent or unreadable. */
export function retryDelayInBody(body: string, maxMs: number): number | undefined {
  const m = /"retryDelay"\s*:\s*"(\d{1,9})(?:\.(\d{1,9}))?s"/.exec(head(body));
  if (!m) return undefined;
  const ms = Number(m[1]) * 1000 + (m[2] === undefined ? 0 : Math.round(Number(`0.${m[2]}`) * 1000));
  return Number.isFinite(ms) && ms >= 0 ? Math.min(ms, maxMs) : undefined;
}

/** A quota that runs per day is spent (Gemini's free tier): the key is done for that model until it resets. */
export function isDailyQuota(body: string): boolean {
  return /"quotaId"\s*:\s*"[^"]*PerDay/i.test(head(body));
}

/** The key's account is out of credit though the status is 400 (Anthropic). */
export function isCreditTooLow(body: string): boolean {
  return /credit balance is too low/i.test(head(body));
}

/**
 * A 402 about this request's size, not the key's credit (OpenRouter: "This request requires more credits,
 * or fewer max_tokens. You requested up to N tokens, but can only afford M").
 */
export function isRequestSizedCredit(body: string): boolean {
  return /fewer max_tokens|can only afford/i.test(head(body));
}

/**
 * A 400 saying the prompt does not fit the model's context window: OpenAI's context_length_exceeded,
 * Anthropic's "prompt is too long", Gemini's "exceeds the maximum number of tokens".
 */
export function isContextLengthExceeded(body: string): boolean {
  return /context_length_exceeded|maximum context length|prompt is too long|exceeds the maximum number of tokens/i.test(head(body));
}

/** The key itself is invalid though the status is 400 (Gemini). */
export function isKeyInvalid(body: string): boolean {
  return /API_KEY_INVALID|API key not valid/i.test(head(body));
}

/** How long a spent daily quota lasts: until the next midnight in Pacific time, when Google resets it. */
export function untilPacificMidnightMs(now: number): number {
  // Pacific is UTC-8 (UTC-7 in summer); resetting an hour early at worst costs one refused probe.
  const offset = 8 * 3_600_000;
  const day = 86_400_000;
  const local = now - offset;
  return day - (((local % day) + day) % day);
}

/** Anthropic's error types, as the status they stand for (https://docs.anthropic.com/en/api/errors). */
const ANTHROPIC_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

/**
 * An error a provider put in the first event of a 200 stream (Anthropic's `event: error`, OpenRouter's
 * `data: {"error":{...}}`), as the status and body it would have had as an answer of its own; undefined
 * when the event is an ordinary one.
 */
export function errorInStream(e: { readonly event: string | undefined; readonly data: string }): { status: number; body: string } | undefined {
  if (e.data.length > SCAN_CHARS || !e.data.includes('error')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(e.data);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object') return undefined;
  const o = parsed as { type?: unknown; error?: unknown };
  const err = o.error;
  if (err === null || typeof err !== 'object') return undefined;
  const { type, code } = err as { type?: unknown; code?: unknown };
  if (e.event === 'error' || o.type === 'error') {
    const status = typeof type === 'string' ? ANTHROPIC_STATUS[type] : undefined;
    return { status: status ?? 500, body: e.data };
  }
  // OpenAI-compatible hosts: `code` is the HTTP status it stands for (OpenRouter), or a string code.
  if (typeof code === 'number' && code >= 400 && code <= 599) return { status: code, body: e.data };
  if (code === 'rate_limit_exceeded' || type === 'rate_limit_error') return { status: 429, body: e.data };
  if (code === 'insufficient_quota' || type === 'insufficient_quota') return { status: 429, body: e.data };
  return { status: 500, body: e.data };
}
