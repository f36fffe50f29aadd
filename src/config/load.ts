// Reads a YAML config: applies the KEYPOOL_* overrides and expands ${VAR} (environment.ts), validates
// with the zod schema, gathers keys from every source, and returns a frozen Config. Every problem names
// the field it is about (or the variable that set it), and none ever holds a secret.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { DEFAULT_KEY_OPTIONS, Key, type KeyOptions } from '../keys/key.js';
import { resolveAdmin, resolveClients } from './clients.js';
import type { Client } from '../clients/client.js';
import type { Token } from '../clients/token.js';
import { lookup, prepareDocument, type Env } from './environment.js';
import { formatPath, showName } from './field-path.js';
import { configSchema, type ParsedConfig, type UpstreamInput } from './schema.js';
import { PRESETS, type Provider, type WireFormat } from './presets.js';
import { globToRegExp } from '../clients/client.js';

export { ENV_OVERRIDES, type Env } from './environment.js';

/** Where the pool key goes on each attempt. */
export type KeyPlacement =
  /** In this header; `authorization` as `Bearer <key>`, any other bare. */
  | { readonly kind: 'header'; readonly name: string }
  /** As this query parameter. */
  | { readonly kind: 'query'; readonly name: string };

export interface Upstream {
  readonly name: string;
  readonly provider: Provider;
  readonly strategy: UpstreamInput['strategy'];
  readonly sticky: UpstreamInput['sticky'];
  readonly prefix: string;
  /** `scheme://host:port` of `baseUrl`. */
  readonly origin: string;
  /** Path part of `baseUrl` without a trailing slash ('' for the root). */
  readonly basePath: string;
  /** The header the pool key goes in (kept for tools that print it; `auth` is what the proxy uses). */
  readonly authHeader: string;
  readonly auth: KeyPlacement;
  /** Sent to the upstream when the client did not send them. */
  readonly defaultHeaders: Readonly<Record<string, string>>;
  /** The shape of keypool's own errors and stream-end events here. */
  readonly format: WireFormat;
  /** Hold a stream's head until its first event for at most this long (ms); undefined: off. */
  readonly commitOnContentMs: number | undefined;
  /** Models served (for routing on a shared prefix); undefined: any. */
  readonly models: readonly RegExp[] | undefined;
  /** Where a request goes when this upstream cannot serve it (see schema `fallbacks`). */
  readonly fallbacks: readonly FallbackStep[];
  /** Chains for some models instead of `fallbacks`, first match wins. */
  readonly modelFallbacks: readonly { readonly pattern: RegExp; readonly steps: readonly FallbackStep[] }[];
  /** Where a request goes after a 400 saying its prompt is too long for the model. */
  readonly contextLengthFallbacks: readonly FallbackStep[];
  readonly circuit: { readonly failures: number; readonly windowMs: number; readonly openMs: number } | undefined;
  readonly keys: readonly Key[];
  readonly probe: UpstreamInput['probe'];
}

/** One step of a fallback chain: an upstream, and the model to ask it for (undefined: the request's own). */
export interface FallbackStep {
  readonly upstream: string;
  readonly model: string | undefined;
}

/** How long a stream's head waits for its first event when commitOnContent is on without a time. */
export const COMMIT_ON_CONTENT_DEFAULT_MS = 3_000;

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

function resolveUpstream(u: UpstreamInput, index: number, env: Env, problems: string[], warnings: string[]): Upstream {
  const at = `upstreams[${index}]`;
  const entries: { name: string | undefined; secret: string; field: string; options: KeyOptions }[] = [];
  const plain = (secret: string, field: string) => ({ name: undefined, secret, field, options: DEFAULT_KEY_OPTIONS });
  u.keys.forEach((k, i) => {
    const field = `${at}.keys[${i}]`;
    if (typeof k === 'string') {
      entries.push(plain(k.trim(), field));
    } else {
      const own = k.baseUrl === undefined ? undefined : new URL(k.baseUrl);
      const options = Object.freeze({
        weight: k.weight,
        group: k.group,
        rpm: k.rpm,
        tpm: k.tpm,
        maxConcurrent: k.maxConcurrent,
        origin: own?.origin,
        basePath: own?.pathname.replace(/\/+$/, ''),
      });
      entries.push({ name: k.name, secret: k.key.trim(), field: `${field}.key`, options });
    }
  });
  if (u.keysFromEnv !== undefined) {
    for (const secret of splitKeys(lookup(env, u.keysFromEnv) ?? '')) entries.push(plain(secret, `${at}.keysFromEnv`));
  }
  if (u.keysFromFile !== undefined) {
    try {
      const lines = readFileSync(u.keysFromFile, 'utf8').split(/\r?\n/);
      for (const line of lines) {
        const secret = line.replace(/#.*$/, '').trim();
        if (secret !== '') entries.push(plain(secret, `${at}.keysFromFile`));
      }
    } catch (err) {
      // The path is not repeated: the field names it, and a key pasted here by mistake must not be echoed.
      problems.push(`${at}.keysFromFile: cannot read the file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }

  const keys: Key[] = [];
  const bySecret = new Map<string, Key>();
  const names = new Set<string>();
  let n = 0;
  for (const e of entries) {
    if (e.secret === '') {
      problems.push(`${e.field}: key is empty`);
      continue;
    }
    if (/\s/.test(e.secret)) {
      problems.push(`${e.field}: key contains white space`);
      continue;
    }
    const name = e.name ?? nextFreeName(u.name, names, () => ++n);
    const dup = bySecret.get(e.secret);
    if (dup) {
      warnings.push(`${e.field}: same secret as key ${dup.name}; using it once`);
      continue;
    }
    if (names.has(name)) {
      problems.push(`${e.field}: key name ${name} is used twice`);
      continue;
    }
    const key = new Key(name, e.secret, e.options);
    names.add(name);
    bySecret.set(e.secret, key);
    keys.push(key);
  }
  if (keys.length === 0 && entries.length === 0) {
    const hint = u.keysFromEnv ? ` (is ${u.keysFromEnv} set?)` : '';
    problems.push(`${at}.keys: upstream ${u.name} has no keys${hint}; list them in keys, keysFromEnv or keysFromFile`);
  }

  const preset = PRESETS[u.provider];
  const baseUrl = u.baseUrl ?? preset.baseUrl;
  if (baseUrl === undefined) problems.push(`${at}.baseUrl: provider ${u.provider} needs a baseUrl (the resource or host to send to)`);
  const base = new URL(baseUrl ?? 'http://invalid.invalid');
  const authHeader = u.authHeader ?? ('header' in preset.auth ? preset.auth.header : 'authorization');
  const auth: KeyPlacement =
    u.authQuery !== undefined
      ? { kind: 'query', name: u.authQuery }
      : u.authHeader === undefined && 'query' in preset.auth
        ? { kind: 'query', name: preset.auth.query }
        : { kind: 'header', name: authHeader };
  const commit = u.commitOnContent ?? preset.commitOnContent;
  return {
    name: u.name,
    provider: u.provider,
    strategy: u.strategy,
    sticky: u.sticky,
    prefix: u.prefix ?? preset.prefix,
    origin: base.origin,
    basePath: base.pathname.replace(/\/+$/, ''),
    authHeader,
    auth,
    defaultHeaders: { ...preset.headers, ...u.headers },
    format: u.errorFormat ?? preset.format,
    commitOnContentMs: commit === false ? undefined : commit === true ? COMMIT_ON_CONTENT_DEFAULT_MS : commit.maxWaitMs,
    models: u.models?.map(globToRegExp),
    fallbacks: steps(u.fallbacks),
    modelFallbacks: Object.entries(u.modelFallbacks ?? {}).map(([glob, list]) => ({ pattern: globToRegExp(glob), steps: steps(list) })),
    contextLengthFallbacks: steps(u.errorFallbacks?.contextLengthExceeded),
    circuit: u.circuit,
    keys,
    probe: u.probe,
  };
}

function steps(list: readonly { upstream: string; model?: string | undefined }[] | undefined): FallbackStep[] {
  return (list ?? []).map((t) => ({ upstream: t.upstream, model: t.model }));
}

/**
 * Upstreams may share a prefix only when each lists its `models` (a request goes to the one that serves
 * its model; one of them may list none: it takes the rest) and they speak the same wire format.
 */
function checkPrefixes(upstreams: readonly Upstream[], problems: string[]): void {
  const byPrefix = new Map<string, number[]>();
  upstreams.forEach((u, i) => byPrefix.set(u.prefix, [...(byPrefix.get(u.prefix) ?? []), i]));
  for (const [prefix, members] of byPrefix) {
    if (members.length < 2) continue;
    const open = members.filter((i) => upstreams[i]!.models === undefined);
    for (const i of open.slice(1)) {
      problems.push(`upstreams[${i}].prefix: ${prefix} is already used by upstreams[${members[0]}]; upstreams sharing a prefix must list their models (one may list none and take the rest)`);
    }
    const format = upstreams[members[0]!]!.format;
    for (const i of members) {
      if (upstreams[i]!.format !== format) problems.push(`upstreams[${i}].prefix: ${prefix} is shared with an upstream of another wire format (${format}); one prefix, one format`);
    }
  }
}

/**
 * Every chain names upstreams that exist and speak the same wire format as the upstream it starts from; no
 * step asks its own upstream for the model the chain is for (the same request to the same pool again: the
 * pool's own rotation and budget already did that), and no chain names one target twice.
 */
function checkChains(raw: ParsedConfig['upstreams'], upstreams: readonly Upstream[], problems: string[]): void {
  const byName = new Map(upstreams.map((u) => [u.name, u] as const));
  const known = upstreams.map((u) => u.name).join(', ');
  upstreams.forEach((u, i) => {
    // `model`: the model every request on this chain asks for (a modelFallbacks key), undefined when any.
    const check = (list: readonly FallbackStep[], field: readonly PropertyKey[], model: string | undefined): void =>
      list.forEach((step, j) => {
        const target = byName.get(step.upstream);
        const at = formatPath(['upstreams', i, ...field, j, 'upstream']);
        const first = list.findIndex((s) => s.upstream === step.upstream && s.model === step.model);
        // The name or model written is not repeated (a value pasted in the wrong place must not come back in an error).
        if (target === undefined) problems.push(`${at}: names no upstream; the upstreams are ${known}`);
        else if (target.format !== u.format) {
          problems.push(`${at}: ${target.name} speaks ${target.format} and ${u.name} speaks ${u.format}; a chain stays within one wire format`);
        } else if (target === u && (step.model ?? model) === model) {
          problems.push(`${at}: ${u.name} again with the same request to the same pool; name another upstream or another model`);
        } else if (first < j) {
          problems.push(`${at}: the same target as ${formatPath(['upstreams', i, ...field, first])}; list each target once`);
        }
      });
    check(u.fallbacks, ['fallbacks'], undefined);
    for (const [glob, list] of Object.entries(raw[i]?.modelFallbacks ?? {})) check(steps(list), ['modelFallbacks', glob], glob);
    check(u.contextLengthFallbacks, ['errorFallbacks', 'contextLengthExceeded'], undefined);
  });
}

function nextFreeName(stem: string, taken: ReadonlySet<string>, next: () => number): string {
  for (;;) {
    const candidate = `${stem}-${next()}`;
    if (!taken.has(candidate)) return candidate;
  }
}

function splitKeys(list: string): string[] {
  return list.split(/[\s,]+/).filter((s) => s !== '');
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
