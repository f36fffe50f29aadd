// Who may read the admin API and /metrics: the holder of `admin.token` when one is configured, else
// only clients on this machine (loopback). Tokens are compared in constant time and never logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { KeypoolError } from '../errors.js';

/**
 * `admin:` as the config gives it, read structurally: the token as text, or as an object that keeps the
 * secret to itself and shows its sha256 (hex) digest; `tokenFile` when the loader has not read it.
 */
export interface AdminSettings {
  readonly token?: string | { readonly digest: string } | undefined;
  readonly tokenFile?: string | undefined;
}

export type GuardVerdict = { readonly ok: true } | { readonly ok: false; readonly error: KeypoolError };

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);
const BEARER = /^bearer[ \t]+(\S+)[ \t]*$/i;

export function isLoopback(address: string | undefined): boolean {
  return address !== undefined && LOOPBACK.has(address);
}

/** The credential a request presents: `Authorization: Bearer <token>`, else `x-api-key`. */
export function presentedToken(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = BEARER.exec(auth);
    if (m?.[1] !== undefined) return m[1];
  }
  const apiKey = headers['x-api-key'];
  const v = Array.isArray(apiKey) ? apiKey[0] : apiKey;
  return v === undefined || v === '' ? undefined : v;
}

const digestOf = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex');

/**
 * Compares digests, in constant time: timingSafeEqual needs equal lengths, and a digest neither has the
 * token's length nor shares a prefix with it.
 */
function matches(given: string, token: string | { readonly digest: string }): boolean {
  const want = Buffer.from(typeof token === 'string' ? digestOf(token) : token.digest, 'utf8');
  const got = Buffer.from(digestOf(given), 'utf8');
  return want.length === got.length && timingSafeEqual(want, got);
}

function refuse(message: string): GuardVerdict {
  return { ok: false, error: new KeypoolError('keypool_admin_unauthorized', message, { headers: { 'www-authenticate': 'Bearer realm="keypool admin"' } }) };
}

/** The rule itself: pure over the settings, the request's headers and its remote address. */
export function checkAdmin(settings: AdminSettings | undefined, headers: IncomingHttpHeaders, remoteAddress: string | undefined): GuardVerdict {
  const token = settings?.token;
  if (token !== undefined && token !== '') {
    const given = presentedToken(headers);
    if (given !== undefined && matches(given, token)) return { ok: true };
    return refuse('The admin API needs the admin token: send it as "Authorization: Bearer <token>" or "x-api-key: <token>".');
  }
  // A token file that was named but not read must not fall back to "loopback may": fail closed.
  if (settings?.tokenFile !== undefined) return refuse('admin.tokenFile is set but its token was not loaded; the admin API is closed.');
  if (isLoopback(remoteAddress)) return { ok: true };
  return refuse('No admin.token is configured, so the admin API answers clients on this machine (loopback) only. Set admin.token to reach it from elsewhere.');
}

/** A Fastify onRequest hook enforcing `checkAdmin` with the settings in force; a refusal is an OpenAI-shaped 401. */
export function adminGuard(settings: () => AdminSettings | undefined) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const verdict = checkAdmin(settings(), request.headers, request.socket.remoteAddress);
    if (verdict.ok) return undefined;
    return reply.code(verdict.error.status).headers(verdict.error.headers).header('cache-control', 'no-store').send(verdict.error.toBody());
  };
}
