// What one probe's answer says about its key, by the proxy's own rules: blame (proxy/blame.ts) decides
// whether a 401/403/404 concerns the key, the model or the request, `insufficient_quota` means out of
// credit (keys/cooldown.ts), and the rate-limit headers are read as the pool reads them
// (keys/rate-limit-report.ts). Pure: the answer and `now` in, a tagged outcome out.
import { isOutOfCredit } from '../keys/cooldown.js';
import { resetDelayMs, type HeaderBag } from '../keys/rate-limit-headers.js';
import { readReport, type Report } from '../keys/rate-limit-report.js';
import { blameOf } from '../proxy/blame.js';

/** What a sender got for one probe. */
export type ProbeAnswer =
  | { readonly kind: 'answered'; readonly status: number; readonly headers: HeaderBag; readonly body: string }
  /** No answer: `reason` is `timeout` or the connection error's code (ECONNREFUSED, UND_ERR_SOCKET...). */
  | { readonly kind: 'failed'; readonly reason: string };

interface Answered {
  readonly status: number;
  /** The upstream's error code or type (`invalid_api_key`), when it is a plain token. Never its message. */
  readonly code: string | undefined;
  /** The rate-limit headroom the answer reported, if any. */
  readonly headroom: Report | undefined;
}

export type ProbeOutcome =
  | ({ readonly kind: 'ok' } & Answered)
  /** The key itself is refused: 401, or a 403 that names the key or its organisation. */
  | ({ readonly kind: 'invalid' } & Answered)
  | ({ readonly kind: 'out_of_credit' } & Answered)
  /** 429 that is not a credit stop; `retryInMs`: when the upstream says to come back. */
  | ({ readonly kind: 'rate_limited'; readonly retryInMs: number | undefined } & Answered)
  /** This key may not use the probe's model; another key may. */
  | ({ readonly kind: 'model_refused'; readonly model: string } & Answered)
  /** A 403 that says nothing about whom it concerns (a restricted key without the probe's permission?). */
  | ({ readonly kind: 'forbidden' } & Answered)
  /** Any other answer: 5xx, or a 4xx about the request (a probe path the upstream does not serve?). */
  | ({ readonly kind: 'error' } & Answered)
  | { readonly kind: 'unreachable'; readonly reason: string };

export type ProbeKind = ProbeOutcome['kind'];

/** `model`: the probe's model ('' when none); `maxMs`: cooldown.maxMs, the cap on any header time. */
export function classify(answer: ProbeAnswer, model: string, now: number, maxMs: number): ProbeOutcome {
  if (answer.kind === 'failed') return { kind: 'unreachable', reason: answer.reason };
  const { status, headers, body } = answer;
  const base: Answered = { status, code: errorCode(body), headroom: readReport(headers, now, maxMs) };
  if (status >= 200 && status < 300) return { kind: 'ok', ...base };
  if (status === 402) return { kind: 'out_of_credit', ...base };
  if (status === 429) {
    if (isOutOfCredit(body)) return { kind: 'out_of_credit', ...base };
    return { kind: 'rate_limited', retryInMs: resetDelayMs(headers, now, maxMs), ...base };
  }
  if (status === 401 || status === 403 || status === 404) {
    switch (blameOf(status, body, model)) {
      case 'key':
        return { kind: 'invalid', ...base };
      case 'model':
        return { kind: 'model_refused', model, ...base };
      case 'unknown':
        return { kind: 'forbidden', ...base };
      case 'request':
        break;
    }
  }
  return { kind: 'error', ...base };
}

/** Codes are short identifiers; anything else in that field is not shown, nor anything shaped like a key. */
const CODE = /^[A-Za-z0-9_.-]{1,64}$/;
const KEY_LIKE = /^(sk|pk|rk|sess|key)-/i;

/** `error.code`, else `error.type` (OpenAI, Anthropic), else a top-level `code`: identifiers only. */
export function errorCode(body: string): string | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (!isRecord(v)) return undefined;
  const error = v['error'];
  const candidates = isRecord(error) ? [error['code'], error['type'], error['status']] : [v['code'], v['type']];
  for (const c of candidates) if (typeof c === 'string' && CODE.test(c) && !KEY_LIKE.test(c)) return c;
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
