// The door of the proxy routes when clients are configured: a request must carry a known token, may
// only use the upstreams and models its client is allowed, and stays within its client's concurrency
// and per-minute limits. Answers are OpenAI-shaped errors and never reach an upstream. Pure apart from
// the counts it keeps; `now` comes in.
import { KeypoolError } from '../errors.js';
import { WINDOW_MS, windowFullUntil, countWindow, type Window } from '../keys/windows.js';
import { allows, type Client } from './client.js';
import { digestOf, presentedToken } from './token.js';

export type Admission = { readonly ok: true; readonly client: Client; readonly release: () => void } | { readonly ok: false; readonly error: KeypoolError };

interface Counts {
  inflight: number;
  readonly minute: Window;
}

const UNAUTHORIZED_HEADERS = Object.freeze({ 'www-authenticate': 'Bearer realm="keypool"', 'x-should-retry': 'false' });

export class ClientGate {
  readonly #byDigest: ReadonlyMap<string, Client>;
  readonly #counts = new Map<string, Counts>();

  constructor(clients: readonly Client[]) {
    this.#byDigest = new Map(clients.map((c) => [c.token.digest, c] as const));
    for (const c of clients) this.#counts.set(c.name, { inflight: 0, minute: { start: 0, count: 0 } });
  }

  /** Who is asking, from the token they sent; undefined when it is missing or unknown. */
  identify(headers: Readonly<Record<string, string | string[] | undefined>>): Client | undefined {
    const token = presentedToken(headers);
    return token === undefined ? undefined : this.#byDigest.get(digestOf(token));
  }

  /** The 401 for a request without a known token. */
  unauthorized(): KeypoolError {
    return new KeypoolError('keypool_unauthorized', 'Missing or unknown client token: send it as "Authorization: Bearer <token>" (or x-api-key).', {
      headers: UNAUTHORIZED_HEADERS,
    });
  }

  /**
   * Checks the client's upstream allow-list and its limits, before anything of the request is read (a
   * client at its limit must not make keypool buffer bodies); on success the request counts until
   * `release` is called.
   */
  admit(c: Client, upstream: string | readonly string[], now: number): Admission {
    // On a prefix several upstreams share, the one that serves the model is known only from the body:
    // the client must be allowed one of them now, and the one chosen later (refuseModel).
    const names = typeof upstream === 'string' ? [upstream] : upstream;
    if (!names.some((u) => this.mayUse(c, u))) return forbidden(c, `upstream ${names.join(' or ')}`);
    const counts = this.#counts.get(c.name)!;
    if (c.maxConcurrent !== undefined && counts.inflight >= c.maxConcurrent) {
      return { ok: false, error: limited(c, `${c.maxConcurrent} requests in flight (clients[].maxConcurrent)`, 1_000) };
    }
    const full = windowFullUntil(counts.minute, c.rpm, 1, now);
    if (full > now) return { ok: false, error: limited(c, `${c.rpm} requests per minute (clients[].rpm)`, full - now) };
    countWindow(counts.minute, 1, now);
    counts.inflight++;
    let released = false;
    return {
      ok: true,
      client: c,
      release: () => {
        if (released) return;
        released = true;
        counts.inflight--;
      },
    };
  }

  /** The 403 for a model (or the upstream serving it) the client may not ask for, once the body said which; undefined when allowed. */
  refuseModel(c: Client, upstream: string, model: string): KeypoolError | undefined {
    const verdict = allows(c, upstream, model);
    if (verdict === 'upstream') return forbidden(c, `upstream ${upstream}`).error;
    return verdict === 'model' ? forbidden(c, `model ${model === '' ? '(none named)' : model}`).error : undefined;
  }

  /**
   * Whether the client may be served by this upstream, with this model when one is named (a fallback it is
   * not allowed is skipped: a client held to a cheap model is never moved to a dearer one).
   */
  mayUse(c: Client, upstream: string, model?: string): boolean {
    return model === undefined ? c.upstreams === undefined || c.upstreams.has(upstream) : allows(c, upstream, model) === 'ok';
  }

  /** Requests in flight per client (admin view). */
  inflight(name: string): number {
    return this.#counts.get(name)?.inflight ?? 0;
  }
}

function forbidden(c: Client, what: string): { ok: false; error: KeypoolError } {
  return { ok: false, error: new KeypoolError('keypool_client_forbidden', `Client ${c.name} may not use ${what}.`, { headers: { 'x-should-retry': 'false' } }) };
}

function limited(c: Client, what: string, waitMs: number): KeypoolError {
  const ms = Math.max(1, Math.ceil(Math.min(waitMs, WINDOW_MS)));
  return new KeypoolError('keypool_client_limit', `Client ${c.name} is at its limit of ${what}.`, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))), 'retry-after-ms': String(ms) },
  });
}
