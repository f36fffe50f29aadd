// Where a running keypool listens, for the commands that talk to it (health, status): server.host and
// server.port of the config with the KEYPOOL_* overrides and ${VAR} expansion, as `serve` would see them.
// Only the server (and admin token) fields must be valid: a healthcheck must not fail because a key
// file or a variable the server needed at start is missing in the checking shell.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { prepareDocument, type Env } from '../config/environment.js';
import { formatPath } from '../config/field-path.js';
import { configSchema } from '../config/schema.js';

export type ServerAddress =
  | { readonly ok: true; readonly url: string; readonly adminToken: string | undefined }
  | { readonly ok: false; readonly problems: readonly string[] };

/** Fields a problem may be about and still matter here. */
const RELEVANT = /^(\(root\)|server\b|admin\b|KEYPOOL_(HOST|PORT)\b)/;

/** `file` undefined: no config, only the defaults and the variables. */
export function serverAddress(file: string | undefined, env: Env): ServerAddress {
  let raw: unknown = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      return { ok: false, problems: [`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`] };
    }
    const doc = parseDocument(text);
    // The parser's messages quote the document, which may hold a secret: `keypool check` says more.
    if (doc.errors.length > 0) return { ok: false, problems: [`${file}: not valid YAML (keypool check --config ${file} says where)`] };
    try {
      raw = doc.toJS() ?? {};
    } catch {
      return { ok: false, problems: [`${file}: not valid YAML (keypool check --config ${file} says where)`] };
    }
  }
  const problems: string[] = [];
  const { document, overridden } = prepareDocument(raw, env, problems);
  const relevant = problems.filter((p) => RELEVANT.test(p));
  if (relevant.length > 0) return { ok: false, problems: relevant };

  const sections = isRecord(document) ? document : {};
  const parsed = configSchema.shape.server.safeParse(sections['server']);
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues.map((issue) => {
        const at = formatPath(['server', ...issue.path]);
        const name = overridden.get(at);
        return `${name === undefined ? at : `${name} (${at})`}: ${issue.message.split('\n')[0] ?? ''}`;
      }),
    };
  }
  const token = adminToken(sections['admin']);
  if (!token.ok) return token;
  return { ok: true, url: `http://${connectHost(parsed.data.host)}:${parsed.data.port}`, adminToken: token.token };
}

/**
 * The host to connect to for a listen address: a wildcard listens on loopback too, and a client cannot
 * connect to the wildcard itself everywhere.
 */
export function connectHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '[::1]';
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * `admin.token` or `admin.tokenFile` when the config has them (the admin section is read as written:
 * a config from before it existed has none).
 */
function adminToken(admin: unknown): { ok: true; token: string | undefined } | { ok: false; problems: string[] } {
  if (!isRecord(admin)) return { ok: true, token: undefined };
  const inline = admin['token'];
  if (typeof inline === 'string' && inline.trim() !== '') return { ok: true, token: inline.trim() };
  const file = admin['tokenFile'];
  if (typeof file !== 'string' || file === '') return { ok: true, token: undefined };
  try {
    const token = readFileSync(file, 'utf8').trim();
    return { ok: true, token: token === '' ? undefined : token };
  } catch (err) {
    return { ok: false, problems: [`admin.tokenFile: cannot read the file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`] };
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
