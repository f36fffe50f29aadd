// Request hygiene, decided before anything is forwarded: which methods pass, how many header fields a
// request may carry, and how its target maps to the upstream path without ever leaving baseUrl's path.
// Pure; never throws. The path is never decoded for forwarding: the upstream gets the client's bytes.
import { KeypoolError } from '../errors.js';

/**
 * Methods keypool forwards. TRACE is not among them (RFC 9110 §9.3.8: an upstream echoes the request,
 * pool key included), nor CONNECT (a tunnel to wherever the client names), nor anything else.
 */
export const ALLOWED_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Value of the `Allow` header on a 405 (RFC 9110 §10.2.1). */
export const ALLOW_HEADER = [...ALLOWED_METHODS].join(', ');
/**
 * Most header fields a request may carry; more get 431. Apache httpd's `LimitRequestFields` default:
 * real clients send a few dozen at most. node keeps only `maxHeadersCount` fields and drops the rest
 * silently, so the server is set to keep one more than this and the count decides.
 */
export const MAX_REQUEST_HEADERS = 100;
/**
 * Layers of percent-encoding looked through for a hidden dot segment (`%252e%252e` is `..` to an upstream
 * or CDN that decodes twice). A path still changing after this many decodings is refused as ambiguous.
 */
export const MAX_DECODE_ROUNDS = 4;

export type TargetResult = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly error: KeypoolError };

/** Where an upstream's paths live: its client prefix and baseUrl's path (no trailing slash). */
export interface TargetUpstream {
  readonly prefix: string;
  readonly basePath: string;
}

export function methodError(method: string): KeypoolError | undefined {
  if (ALLOWED_METHODS.has(method)) return undefined;
  return new KeypoolError('keypool_method_not_allowed', `keypool does not forward ${safeToken(method)} requests; allowed: ${ALLOW_HEADER}.`, {
    headers: { allow: ALLOW_HEADER },
  });
}

export function headerCountError(count: number): KeypoolError | undefined {
  if (count <= MAX_REQUEST_HEADERS) return undefined;
  return new KeypoolError('keypool_headers_too_large', `The request has more than ${MAX_REQUEST_HEADERS} header fields.`);
}

/**
 * What is wrong with a request whatever route it takes: method, header count, target form. `headerCount`
 * is the number of fields node kept (`rawHeaders.length / 2`).
 */
export function vetRequest(method: string, rawUrl: string, headerCount: number, host: string | undefined): KeypoolError | undefined {
  const form = originForm(rawUrl, host);
  return methodError(method) ?? headerCountError(headerCount) ?? (form.ok ? undefined : form.error);
}

/**
 * The upstream path for a request: baseUrl's path + what follows the prefix, the query byte for byte.
 * Refused (400): a target that is neither origin-form nor absolute-form naming keypool itself, a path
 * that does not begin with the prefix as written, characters a request target may not carry, and any
 * dot segment in any encoding (they are refused rather than resolved: no API path has one, and an
 * upstream or CDN that normalises differently from us could be walked out of the base path).
 */
export function resolveTarget(method: string, rawUrl: string, upstream: TargetUpstream, host: string | undefined): TargetResult {
  const refused = methodError(method);
  if (refused) return { ok: false, error: refused };
  const form = originForm(rawUrl, host);
  if (!form.ok) return form;
  const target = form.path;
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q);
  const { prefix, basePath } = upstream;

  if (prefix !== '/' && path !== prefix && !path.startsWith(`${prefix}/`)) {
    // The router matched a decoded form (`/%76%31/...` routes as `/v1/...`); slicing it would garble the path.
    return invalid(`The path must begin with the prefix ${prefix} as written, not percent-encoded.`);
  }
  if (!TARGET_CHARS.test(path)) return invalid('The path contains characters a request target may not carry (RFC 3986 §3.3).');
  const rest = prefix === '/' ? path : path.slice(prefix.length);
  const view = decodedView(rest);
  if (view === undefined) return invalid(`The path is percent-encoded more than ${MAX_DECODE_ROUNDS} times over.`);
  if (hasDotSegment(view)) return invalid('The path contains a "." or ".." segment (in some encoding); keypool forwards none.');
  // `//host/...` is a network-path reference to many parsers: the upstream could read a host from it.
  if (basePath === '' && /^[/\\]{2}/.test(view)) return invalid('The path begins with two slashes.');
  return { ok: true, path: `${rest === '' ? basePath || '/' : basePath + rest}${query}` };
}

type FormResult = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly error: KeypoolError };

/**
 * The origin-form of a target (RFC 9112 §3.2). Absolute-form is accepted, as §3.2.2 asks of servers, only
 * when it names keypool itself (its authority is the Host header): a target naming another host was
 * meant for a forward proxy, and keypool is not one; it always connects to the upstream's origin.
 * Asterisk-form (`OPTIONS *`) asks about the server, not a resource: nothing to forward.
 */
/** The path a target routes by: itself in origin-form, the path of an acceptable absolute-form; else undefined. */
export function routingPath(rawUrl: string, host: string | undefined): string | undefined {
  if (rawUrl.startsWith('/')) return rawUrl;
  const form = originForm(rawUrl, host);
  return form.ok ? form.path : undefined;
}

function originForm(rawUrl: string, host: string | undefined): FormResult {
  if (rawUrl.startsWith('/')) return { ok: true, path: rawUrl };
  if (rawUrl === '*') return invalid('Asterisk-form (OPTIONS *) is not forwarded.');
  const m = ABSOLUTE_FORM.exec(rawUrl);
  if (!m) return invalid('The request target is not a path.');
  const authority = m[1]!;
  if (host === undefined || authority.includes('@') || authority.toLowerCase() !== host.toLowerCase()) {
    return invalid('An absolute-form target names another host; keypool is not a forward proxy.');
  }
  const rest = m[2] ?? '';
  return { ok: true, path: rest === '' || rest.startsWith('?') ? `/${rest}` : rest };
}

const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([/?].*)?$/is;
/** pchar and `/` (RFC 3986 §3.3), as raw bytes: visible ASCII except `#` (a fragment never reaches a server). */
const TARGET_CHARS = /^[\x21\x22\x24-\x7e]*$/;

function invalid(message: string): { ok: false; error: KeypoolError } {
  return { ok: false, error: new KeypoolError('keypool_invalid_path', message) };
}

/** A method named in a message: the token itself when it is one (it came from the client), else "such". */
function safeToken(method: string): string {
  return /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}$/.test(method) ? method : 'such';
}

/**
 * True when a segment is `.` or `..` to some parser: split at `/` and `\` (WHATWG URL treats both as
 * separators), ignore `;params` (Tomcat's `..;/`) and what follows a decoded `?` or `#`, and count a
 * segment of only dots, whitespace and NULs as a dot segment (Windows drops trailing dots and spaces).
 */
export function hasDotSegment(view: string): boolean {
  for (const segment of view.split(/[/\\]/)) {
    const name = segment.split(/[;?#]/, 1)[0]!;
    if (name.includes('.') && /^[.\s\0]+$/.test(name)) return true;
  }
  return false;
}

/**
 * How the path may look to the most liberal parser behind the upstream: percent-decoded up to
 * MAX_DECODE_ROUNDS times (also IIS's `%uXXXX` and overlong UTF-8 such as `%c0%ae`), then NFKC-normalised
 * (fullwidth `．` and `／` become `.` and `/`). `undefined` when still encoded after the last round.
 */
export function decodedView(path: string): string | undefined {
  let view = path;
  for (let round = 0; round <= MAX_DECODE_ROUNDS; round++) {
    const next = view.includes('%') ? decodeOnce(view) : view;
    if (next === view) return view.normalize('NFKC');
    if (round === MAX_DECODE_ROUNDS) return undefined;
    view = next;
  }
  return undefined;
}

function decodeOnce(s: string): string {
  return s
    .replace(/%u([0-9a-fA-F]{4})/g, (_m, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
    .replace(/(?:%[0-9a-fA-F]{2})+/g, (run) => {
      const bytes: number[] = [];
      for (let i = 0; i < run.length; i += 3) bytes.push(Number.parseInt(run.slice(i + 1, i + 3), 16));
      return lenientUtf8(bytes);
    });
}

/** UTF-8 that also accepts overlong forms (`c0 ae` is `.`): what a careless decoder would produce. */
function lenientUtf8(bytes: readonly number[]): string {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const need = b < 0x80 ? 0 : b >= 0xc0 && b < 0xe0 ? 1 : b >= 0xe0 && b < 0xf0 ? 2 : b >= 0xf0 && b < 0xf8 ? 3 : -1;
    if (need <= 0) {
      out += need === 0 ? String.fromCharCode(b) : '\ufffd';
      i++;
      continue;
    }
    let cp = b & (0x3f >> need);
    let j = 1;
    for (; j <= need && i + j < bytes.length && (bytes[i + j]! & 0xc0) === 0x80; j++) cp = (cp << 6) | (bytes[i + j]! & 0x3f);
    if (j <= need || cp > 0x10ffff) {
      out += '\ufffd';
      i++;
      continue;
    }
    out += String.fromCodePoint(cp);
    i += need + 1;
  }
  return out;
}
