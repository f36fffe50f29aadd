// Header rules for both directions: strip hop-by-hop headers (RFC 9110 §7.6.1, including names listed
// in Connection), never pass the client's own credentials upstream, inject the pool key per attempt.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** RFC 9110 §7.6.1 plus the de-facto ones (keep-alive, proxy-connection). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Client headers that must never reach the upstream: credentials, and what undici sets itself. */
/**
 * `openai-organization` / `openai-project` are dropped too: the pool key decides the organisation, and a
 * client's header that does not match a key's organisation makes OpenAI answer 401, which would disable
 * every key in turn.
 */
const REQUEST_DROP = new Set([
  'authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
  'host',
  'content-length',
  'expect',
  'openai-organization',
  'openai-project',
  // A method named in a header (Rails, Express, Google front ends honour them) would get round the
  // method rule: TRACE, one header away. The method keypool forwards is the request's own.
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
]);

function connectionListed(value: string | string[] | undefined): Set<string> | undefined {
  // The usual values name no header: skip the parse on the hot path.
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined;
  const list = (Array.isArray(value) ? value.join(',') : value).split(',');
  const names = new Set<string>();
  for (const n of list) {
    const t = n.trim().toLowerCase();
    if (t !== '') names.add(t);
  }
  return names.size > 0 ? names : undefined;
}

/**
 * keypool's own headers (x-keypool-request-id, -attempts, -key, -upstream, -model, -wait-ms...): only
 * keypool sets them, in either direction. One from the upstream (another keypool in front of it, or a
 * forger) would sit beside keypool's, or stand for one keypool did not send; one from a client is not
 * the upstream's business.
 */
function isKeypoolHeader(name: string): boolean {
  return name.charCodeAt(0) === 120 && name.startsWith('x-keypool-');
}

/** The client's headers as the upstream should see them, before a key is added. */
export function upstreamRequestHeaders(client: IncomingHttpHeaders): Record<string, string | string[]> {
  const listed = connectionListed(client.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in client) {
    const v = client[name];
    if (v === undefined || HOP_BY_HOP.has(name) || REQUEST_DROP.has(name) || listed?.has(name)) continue;
    if (isKeypoolHeader(name)) continue;
    out[name] = v;
  }
  return out;
}

/**
 * Puts the pool key in the upstream's auth header, `Bearer <key>` for authorization and bare otherwise,
 * on the request's own header object. Writing in place, not copying, is safe: undici serialises the
 * headers when an attempt is dispatched, and attempts of one request never overlap.
 */
export function setKey(
  headers: Record<string, string | string[]>,
  authHeader: string,
  secret: string | { reveal(): string; revealBearer(): string },
): Record<string, string | string[]> {
  if (typeof secret === 'string') headers[authHeader] = authHeader === 'authorization' ? `Bearer ${secret}` : secret;
  else headers[authHeader] = authHeader === 'authorization' ? secret.revealBearer() : secret.reveal();
  return headers;
}


/** The upstream's response headers as the client should see them. */
export function clientResponseHeaders(
  upstream: Readonly<Record<string, string | string[] | undefined>>,
): OutgoingHttpHeaders {
  const listed = connectionListed(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    const v = upstream[name];
    if (v === undefined || HOP_BY_HOP.has(name) || listed?.has(name) || isKeypoolHeader(name)) continue;
    out[name] = v;
  }
  return out;
}

/**
 * The same as a flat [name, value, name, value...] list, which writeHead takes without building another
 * object (the hot path: every delivered answer).
 */
export function clientResponseHeaderList(upstream: Readonly<Record<string, string | string[] | undefined>>): string[] {
  const listed = connectionListed(upstream.connection);
  const out: string[] = [];
  for (const name in upstream) {
    const v = upstream[name];
    if (v === undefined || HOP_BY_HOP.has(name) || listed?.has(name) || isKeypoolHeader(name)) continue;
    if (typeof v === 'string') out.push(name, v);
    else for (const one of v) out.push(name, one);
  }
  return out;
}

/** A header's first value, undefined when absent or empty. */
export function headerValue(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s;
}

/** Longest path a log line carries: enough to see what it was, not a 16 KiB line. */
const MAX_LOGGED_PATH = 256;

/** The path without its query (it may carry a credential), cut for the log. */
export function pathOnly(url: string): string {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path;
}

/** Adds the headers an upstream requires that the client did not send (the anthropic preset's anthropic-version). */
export function withDefaults(headers: Record<string, string | string[]>, defaults: Readonly<Record<string, string>>): Record<string, string | string[]> {
  for (const name in defaults) if (headers[name] === undefined) headers[name] = defaults[name]!;
  return headers;
}

/**
 * The path with the named query parameters removed, the rest byte for byte (order and encoding kept).
 * Names are compared as sent: `key` and `KEY` are different parameters to every server that matters.
 */
export function withoutQueryParams(path: string, names: ReadonlySet<string>): string {
  const q = path.indexOf('?');
  if (q === -1) return path;
  const kept = path
    .slice(q + 1)
    .split('&')
    .filter((pair) => {
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      return pair !== '' && !names.has(name);
    });
  return kept.length === 0 ? path.slice(0, q) : `${path.slice(0, q)}?${kept.join('&')}`;
}

/** The path with the pool key added as a query parameter (an upstream that takes keys in the URL). */
export function withQueryKey(path: string, name: string, secret: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}${name}=${encodeURIComponent(secret)}`;
}

/**
 * A value keypool puts in a header of its own (x-keypool-model: the client's model name, as sent): every
 * character a header may not carry (controls, anything past ASCII) percent-encoded as UTF-8, so an odd
 * model name can never make an answer already in hand undeliverable.
 */
export function headerSafe(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : value.replace(/[^\x20-\x7e]+/gu, encodeRun);
}

function encodeRun(run: string): string {
  try {
    return encodeURIComponent(run);
  } catch {
    // A lone surrogate has no UTF-8 form: U+FFFD stands for the run.
    return '%EF%BF%BD';
  }
}
