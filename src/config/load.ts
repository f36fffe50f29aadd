// Reads a YAML config: applies the KEYPOOL_* overrides and expands ${VAR} (environment.ts), validates
// with the zod schema, resolves each upstream and its keys (upstream.ts), checks prefixes and chains across
// upstreams, and returns a frozen Config. Every problem names the field it is about (or the variable that
// set it), and none ever holds a secret.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import type { Client } from '../clients/client.js';
import type { Token } from '../clients/token.js';
import { ConfigError } from '../errors.js';
import { Key } from '../keys/key.js';
import { checkChains } from './chain-checks.js';
import { resolveAdmin, resolveClients } from './clients.js';
import { prepareDocument, type Env } from './environment.js';
import { formatPath, showName } from './field-path.js';
import { checkPrefixes } from './prefix-checks.js';
import { configSchema, type ParsedConfig } from './schema.js';
import { resolveUpstream, type Upstream } from './upstream.js';

export { ENV_OVERRIDES, type Env } from './environment.js';
export type { FallbackStep, KeyPlacement, Upstream } from './upstream.js';
export { COMMIT_ON_CONTENT_DEFAULT_MS } from './upstream-schema.js';

export type Config = Readonly<Omit<ParsedConfig, 'upstreams' | 'clients' | 'admin'>> & {
  readonly upstreams: readonly Upstream[];
  /** Undefined: no client tokens, the proxy routes take any request. */
  readonly clients: readonly Client[] | undefined;
  readonly admin: { readonly token: Token | undefined };
};

export interface LoadResult {
  config: Config;
  /** Non-fatal findings, e.g. the same secret listed twice. Never contains a secret. */
  warnings: string[];
  /** Files the config was read from besides the document itself (keysFromFile, tokenFile): a reload watches them. */
  files: string[];
}

export function loadConfigFile(file: string, env: Env = process.env): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return loadConfigText(text, env);
}

export function loadConfigText(text: string, env: Env = process.env): LoadResult {
  let raw: unknown;
  try {
    const doc = parseDocument(text, { prettyErrors: true });
    if (doc.errors.length > 0) {
      const problems = doc.errors.map((e) => `(root): YAML: ${yamlProblem(e.message)}`);
      throw new ConfigError(problems.join('\n'), problems);
    }
    // toJS throws on an alias bomb or an alias before its anchor.
    raw = doc.toJS();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`(root): YAML: ${yamlProblem(err instanceof Error ? err.message : String(err))}`);
  }
  return loadConfigObject(raw ?? {}, env);
}

/**
 * A document as YAML would give it (`loadConfigText` without the text), validated against `env`: the
 * overrides and `${VAR}` expansion happen here, so this is the whole of what the environment does.
 */
export function loadConfigObject(raw: unknown, env: Env = process.env): LoadResult {
  const problems: string[] = [];
  const { document, overridden } = prepareDocument(raw, env, problems);
  if (problems.length > 0) throw new ConfigError(problems.join('\n'), problems);

  const parsed = configSchema.safeParse(document);
  if (!parsed.success) {
    const list = parsed.error.issues.flatMap((issue) => issueLines(issue, [], overridden));
    throw new ConfigError(list.join('\n'), list);
  }

  const warnings: string[] = [];
  const upstreams = parsed.data.upstreams.map((u, i) => resolveUpstream(u, i, env, problems, warnings));
  checkPrefixes(upstreams, problems);
  checkChains(parsed.data.upstreams, upstreams, problems);
  const clients = parsed.data.clients === undefined ? undefined : resolveClients(parsed.data.clients, new Set(upstreams.map((u) => u.name)), problems);
  const admin = resolveAdmin(parsed.data.admin, problems);
  if (problems.length > 0) throw new ConfigError(problems.join('\n'), problems);

  const config: Config = { ...parsed.data, upstreams, clients, admin };
  const files = [
    ...parsed.data.upstreams.flatMap((u) => (u.keysFromFile === undefined ? [] : [u.keysFromFile])),
    ...(parsed.data.clients ?? []).flatMap((c) => (c.tokenFile === undefined ? [] : [c.tokenFile])),
    ...(parsed.data.admin.tokenFile === undefined ? [] : [parsed.data.admin.tokenFile]),
  ];
  return { config: deepFreeze(config), warnings, files };
}

/**
 * One line per problem: `field.path: message`, or `KEYPOOL_PORT (server.port): message` when a variable
 * set the field. A union that failed deep inside one branch (a `{ key }` entry with a bad field) reports
 * that branch's problems rather than "Invalid input".
 */
function issueLines(issue: z.core.$ZodIssue, base: readonly PropertyKey[], overridden: ReadonlyMap<string, string>): string[] {
  const path = [...base, ...issue.path];
  if (issue.code === 'invalid_union') {
    const deeper = issue.errors.filter((branch) => branch.some((i) => i.path.length > 0 || i.code !== 'invalid_type'));
    if (deeper.length === 1) return (deeper[0] ?? []).flatMap((i) => issueLines(i, path, overridden));
  }
  const at = formatPath(path);
  const name = overridden.get(at);
  return [`${name === undefined ? at : `${name} (${at})`}: ${issueMessage(issue)}`];
}

function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code !== 'unrecognized_keys') return issue.message.split('\n')[0] ?? '';
  // Shown only when it could be a field name (field-path.ts): a pasted secret is not.
  const names = issue.keys.map((k) => (showName(k) === k ? JSON.stringify(k) : '(a name not shown)'));
  return `Unrecognized key${names.length > 1 ? 's' : ''}: ${names.join(', ')}`;
}

/**
 * The first line of a YAML error, position kept, with whatever it quotes from the document cut out: a
 * document that fails to parse may hold a secret, and the parser quotes tags, aliases and scalars.
 */
function yamlProblem(message: string): string {
  const first = message.split('\n')[0] ?? '';
  const m = /^(.*?)((?: at line \d+, column \d+)?):?$/.exec(first);
  const what = (m?.[1] ?? first)
    .replace(/: .*$/, '')
    .replace(/"[^"]*"/g, '"…"')
    .replace(/[!*&][^\s,]+/g, '…');
  return `${what}${m?.[2] ?? ''}`;
}

function deepFreeze<T>(value: T): T {
  // Keys and tokens guard their own secrets; regexps and sets are not plain data.
  const opaque = value instanceof Key || value instanceof RegExp || value instanceof Set || (value as { digest?: unknown } | null)?.digest !== undefined;
  if (value !== null && typeof value === 'object' && !opaque && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
