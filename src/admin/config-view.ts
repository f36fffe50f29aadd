// GET /admin/config: the effective config (defaults filled in) with every secret masked: keys as
// name + fingerprint + masked form, tokens and passwords as "[set]", credentials in URLs as "****".
// Then, as a backstop for fields added later, every other string passes the pool's scrubber.
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/load.js';
import { Key } from '../keys/key.js';
import { createScrubber, type Scrubber } from '../keys/scrub.js';

/** Fields whose value is a secret, or a digest of one, wherever they appear (client tokens, admin token, passwords). */
const SECRET_FIELDS = new Set(['token', 'password', 'secret', 'apiKey', 'api_key', 'key', 'digest']);
/** Fields that are identities, never secrets: left as they are (the scrubber would mangle `key-…` names). */
const IDENTITY_FIELDS = new Set(['name', 'fingerprint', 'masked']);
const SET = '[set]';
/** `scheme://userinfo@` */
const URL_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/@?#]*@/i;

export type Masked = string | number | boolean | null | readonly Masked[] | { readonly [k: string]: Masked };

/** Masks one value of the config tree; `field` is the property it sits under. */
export function maskValue(value: unknown, field: string, scrub: Scrubber): Masked | undefined {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return String(value);
  if (value instanceof Key) return { name: value.name, fingerprint: value.fingerprint, masked: value.masked() };
  // An object that says how it is shown (a token shows its name and "[set]") is shown so, then masked too.
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return maskValue((toJSON as () => unknown).call(value), field, scrub);
  if (typeof value === 'string') {
    if (SECRET_FIELDS.has(field)) return value === '' ? '' : SET;
    if (IDENTITY_FIELDS.has(field)) return value;
    return scrub(value.replace(URL_USERINFO, '$1****@'));
  }
  if (Array.isArray(value)) return value.map((v) => maskValue(v, field, scrub) ?? null);
  const out: Record<string, Masked> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const m = maskValue(v, k, scrub);
    if (m !== undefined) out[k] = m;
  }
  return out;
}

export function maskConfig(config: Config): Masked {
  const scrub = createScrubber(config.upstreams.flatMap((u) => u.keys));
  return maskValue(config, '', scrub) ?? null;
}

export function registerConfigRoute(app: FastifyInstance, config: () => Config): void {
  app.get('/admin/config', async (_request, reply) => reply.header('cache-control', 'no-store').send(maskConfig(config())));
}
