// Whom a refusal concerns, read from what the upstream says, not from its status alone: the key itself
// (invalid, revoked, its organisation disabled: no request will ever work with it), the key for one
// model (its project may not use that model; another key's may), or the request (every key would get
// the same answer). Pure. Patterns follow OpenAI's and Anthropic's documented error codes and wording.
//   OpenAI: https://platform.openai.com/docs/guides/error-codes  Anthropic: https://docs.anthropic.com/en/api/errors

export type Blame = 'key' | 'model' | 'request' | 'unknown';

/** How much of an error body is read for blame. */
const BLAME_SCAN_CHARS = 8192;

/** The key cannot be used at all. */
const KEY_PATTERNS: readonly RegExp[] = [
  /invalid_api_key/,
  /incorrect api key/i,
  /invalid (x-)?api[- ]key/i,
  /api key.{0,60}?\b(revoked|disabled|deactivated|expired|deleted|invalid)\b/i,
  /\b(account|organi[sz]ation|project|workspace)\b.{0,60}?\b(disabled|deactivated|suspended|archived|deleted|banned)\b/i,
  /invalid_organization|no_such_organization|organization_not_found|account_deactivated/,
  /must be a member of an organi[sz]ation/i,
  /authentication_error/,
  // Gemini: the key's Google Cloud project has the API off, or the key is restricted away from it.
  /SERVICE_DISABLED|has not been used in project|API_KEY_SERVICE_BLOCKED/,
];

/** This key may not use this model (or the model does not exist for its project). */
const MODEL_PATTERNS: readonly RegExp[] = [
  /model_not_found/,
  /does not have access to (the )?model/i,
  /\bmodel\b.{0,200}?\bdoes not exist\b/i,
  /\bnot allowed to (use|sample from) (this|the) model/i,
];

/** Every key would get this answer: it is about where the request comes from or what it asks. */
const REQUEST_PATTERNS: readonly RegExp[] = [/unsupported_country_region_territory/, /country, region,? or territory not supported/i];

/**
 * Reads a 401, 403 or 404 answer. `model` is the request's model ('' when unknown): without one, a
 * model-shaped refusal cannot be pinned to a model and concerns the request.
 */
export function blameOf(status: number, bodyText: string, model: string): Blame {
  // A restricted key lacking one endpoint's scope: the key works elsewhere (OpenAI's missing_scope).
  if (status === 401) return /missing_scope|insufficient permissions/i.test(bodyText.slice(0, BLAME_SCAN_CHARS)) ? 'unknown' : 'key';
  // Error bodies are short; a long one is not worth scanning further (bounded work per response).
  const body = bodyText.length > BLAME_SCAN_CHARS ? bodyText.slice(0, BLAME_SCAN_CHARS) : bodyText;
  if (REQUEST_PATTERNS.some((p) => p.test(body))) return 'request';
  // A model refusal is checked first: "the project ... does not have access to model" names a project too.
  if (MODEL_PATTERNS.some((p) => p.test(body))) return model === '' ? 'request' : 'model';
  if (status === 403 && KEY_PATTERNS.some((p) => p.test(body))) return 'key';
  // Anthropic's permission_error on a known model: that key's workspace may not use it.
  if (status === 403 && model !== '' && /permission_error/.test(body)) return 'model';
  if (status === 404 && model !== '' && /not_found_error/.test(body) && /\bmodel\b/i.test(body)) return 'model';
  return status === 403 ? 'unknown' : 'request';
}
