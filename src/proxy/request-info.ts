// What keypool reads from a request body to schedule it: the model (rate limits are per model), a token
// estimate (for token limits), whether it streams, and a sticky session id. Pure; never throws.
import type { Demand } from '../keys/key-state.js';
import { ANY_MODEL } from '../keys/key-state.js';
import { readTopLevel } from './top-level-json.js';

export interface RequestInfo {
  readonly demand: Demand;
  readonly stream: boolean;
  /** Values of the configured sticky body fields, first non-empty one. */
  readonly sessionFromBody: string | undefined;
}

/** Bodies larger than this are not read: scheduling falls back to "any model". Also the scan's byte bound. */
// The scan is bounded work (top-level-json.ts: no recursion, long strings skipped natively), so a large
// vision or file request still has its model read; only past this it is scheduled by path.
export const PARSE_LIMIT_BYTES = 64 * 1024 * 1024;
/** Longest model name tracked as its own rate-limit scope. */
export const MAX_MODEL_CHARS = 256;
/** A demand above this many tokens is counted as this many (no real limit comes near it). */
export const MAX_TOKENS = 1_000_000_000;
/** OpenAI's rule of thumb: about four bytes of English text per token. */
const BYTES_PER_TOKEN = 4;

const NOTHING: RequestInfo = Object.freeze({ demand: ANY_MODEL, stream: false, sessionFromBody: undefined });

/** The fields read whatever the sticky configuration: the model, the stream flag, the output caps. */
const FIELDS = ['model', 'stream', 'max_completion_tokens', 'max_tokens', 'max_output_tokens'] as const;

export function requestInfo(body: Buffer | undefined, contentType: string | undefined, stickyFields: readonly string[]): RequestInfo {
  if (body === undefined || body.length === 0 || body.length > PARSE_LIMIT_BYTES) return NOTHING;
  if (contentType !== undefined && !contentType.includes('json')) return NOTHING;
  // A bounded scan of the top level, not JSON.parse: parse time grows with nesting depth, and this runs
  // on the event loop every other request shares (top-level-json.ts).
  const o = readTopLevel(body, stickyFields.length === 0 ? FIELDS : [...FIELDS, ...stickyFields]);
  if (o === undefined) return NOTHING;
  // Real model names are short; a longer one is scheduled as "any model" rather than tracked.
  const m = o.get('model');
  const model = typeof m === 'string' && m.length <= MAX_MODEL_CHARS ? m : '';
  const maxOut = firstNumber(o.get('max_completion_tokens'), o.get('max_tokens'), o.get('max_output_tokens'));
  // Clamped to a whole number far above any real limit: 1e20 would overflow the shared store's integers.
  const tokens = Math.min(MAX_TOKENS, Math.ceil(maxOut) + Math.ceil(body.length / BYTES_PER_TOKEN));
  let sessionFromBody: string | undefined;
  for (const f of stickyFields) {
    const v = o.get(f);
    if (typeof v === 'string' && v !== '') {
      sessionFromBody = v;
      break;
    }
  }
  return { demand: { model, tokens }, stream: o.get('stream') === true, sessionFromBody };
}

function firstNumber(...values: unknown[]): number {
  for (const v of values) if (typeof v === 'number' && Number.isFinite(v) && v > 0) return v;
  return 0;
}
