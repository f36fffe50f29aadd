// Resolves the `clients` and `admin` sections: tokens from the document or a file, checked (long enough,
// unique), allow-lists compiled. Problems name the field and never the token.
import { readFileSync } from 'node:fs';
import { globToRegExp, type Client } from '../clients/client.js';
import { Token } from '../clients/token.js';
import type { ParsedConfig } from './schema.js';

/** Shorter tokens can be guessed; API keys are far longer. */
export const MIN_TOKEN_CHARS = 16;

export function resolveClients(list: NonNullable<ParsedConfig['clients']>, upstreams: ReadonlySet<string>, problems: string[]): Client[] {
  const out: Client[] = [];
  const names = new Set<string>();
  const digests = new Map<string, string>();
  list.forEach((c, i) => {
    const at = `clients[${i}]`;
    const secret = tokenOf(c, at, problems);
    if (names.has(c.name)) problems.push(`${at}.name: client name ${c.name} is used twice`);
    names.add(c.name);
    for (const [j, u] of (c.upstreams ?? []).entries()) {
      if (!upstreams.has(u)) problems.push(`${at}.upstreams[${j}]: no upstream is named ${u}`);
    }
    if (secret === undefined) return;
    const token = new Token(c.name, secret);
    const same = digests.get(token.digest);
    if (same !== undefined) problems.push(`${at}: same token as client ${same}; every client needs its own`);
    digests.set(token.digest, c.name);
    out.push({
      name: c.name,
      token,
      maxConcurrent: c.maxConcurrent,
      rpm: c.rpm,
      upstreams: c.upstreams === undefined ? undefined : new Set(c.upstreams),
      models: c.models?.map(globToRegExp),
    });
  });
  return out;
}

export function resolveAdmin(a: ParsedConfig['admin'], problems: string[]): { token: Token | undefined } {
  if (a.token === undefined && a.tokenFile === undefined) return { token: undefined };
  const secret = tokenOf(a, 'admin', problems);
  return { token: secret === undefined ? undefined : new Token('admin', secret) };
}

function tokenOf(c: { token?: string | undefined; tokenFile?: string | undefined }, at: string, problems: string[]): string | undefined {
  if ((c.token === undefined) === (c.tokenFile === undefined)) {
    problems.push(`${at}: give exactly one of token and tokenFile`);
    return undefined;
  }
  let secret: string;
  if (c.tokenFile !== undefined) {
    try {
      secret = readFileSync(c.tokenFile, 'utf8').trim();
    } catch (err) {
      // The path is not repeated: a token pasted here by mistake must not be echoed.
      problems.push(`${at}.tokenFile: cannot read the file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      return undefined;
    }
  } else {
    secret = (c.token ?? '').trim();
  }
  const field = c.tokenFile !== undefined ? `${at}.tokenFile` : `${at}.token`;
  if (secret === '') {
    problems.push(`${field}: the token is empty`);
    return undefined;
  }
  if (/\s/.test(secret)) {
    problems.push(`${field}: the token contains white space`);
    return undefined;
  }
  if (secret.length < MIN_TOKEN_CHARS) {
    problems.push(`${field}: the token is too short (at least ${MIN_TOKEN_CHARS} characters)`);
    return undefined;
  }
  return secret;
}
