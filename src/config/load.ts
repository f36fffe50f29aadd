// Reads a YAML config: expands ${VAR} / ${VAR:-default}, validates with the zod schema, gathers keys
// from every source, and returns a frozen Config. Every error names the field it is about.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { DEFAULT_KEY_OPTIONS, Key, type KeyOptions } from '../keys/key.js';
import { configSchema, type ParsedConfig, type UpstreamInput } from './schema.js';

export interface Upstream {
  readonly name: string;
  readonly strategy: UpstreamInput['strategy'];
  readonly sticky: UpstreamInput['sticky'];
  readonly prefix: string;
  /** `scheme://host:port` of `baseUrl`. */
  readonly origin: string;
  /** Path part of `baseUrl` without a trailing slash ('' for the root). */
  readonly basePath: string;
  readonly authHeader: string;
  readonly keys: readonly Key[];
}

export type Config = Readonly<Omit<ParsedConfig, 'upstreams'>> & { readonly upstreams: readonly Upstream[] };

export interface LoadResult {
  config: Config;
  /** Non-fatal findings, e.g. the same secret listed twice. Never contains a secret. */
  warnings: string[];
}

export type Env = Readonly<Record<string, string | undefined>>;

export function loadConfigFile(file: string, env: Env = process.env): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return loadConfigText(text, env, file);
}

export function loadConfigText(text: string, env: Env = process.env, source = 'config'): LoadResult {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => `${source}: YAML: ${e.message.split('\n')[0] ?? e.message}`);
    throw new ConfigError(problems.join('\n'), problems);
  }
  return loadConfigObject(doc.toJS() ?? {}, env);
}

export function loadConfigObject(raw: unknown, env: Env = process.env): LoadResult {
  const problems: string[] = [];
  const expanded = expandEnv(raw, [], env, problems);
  if (problems.length > 0) throw new ConfigError(problems.join('\n'), problems);

  const parsed = configSchema.safeParse(expanded);
  if (!parsed.success) {
    const list = parsed.error.issues.map(formatIssue);
    throw new ConfigError(list.join('\n'), list);
  }

  const warnings: string[] = [];
  const upstreams = parsed.data.upstreams.map((u, i) => resolveUpstream(u, i, env, problems, warnings));
  const prefixes = new Map<string, number>();
  upstreams.forEach((u, i) => {
    const seen = prefixes.get(u.prefix);
    if (seen !== undefined) problems.push(`upstreams[${i}].prefix: ${u.prefix} is already used by upstreams[${seen}]`);
    prefixes.set(u.prefix, i);
  });
  if (problems.length > 0) throw new ConfigError(problems.join('\n'), problems);

  const config: Config = { ...parsed.data, upstreams };
  return { config: deepFreeze(config), warnings };
}

function formatIssue(issue: z.core.$ZodIssue): string {
  return `${formatPath(issue.path) || '(root)'}: ${issue.message}`;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Expands ${VAR} and ${VAR:-default} in every string; an unset VAR without default is an error at that path. */
function expandEnv(value: unknown, path: PropertyKey[], env: Env, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (_m, name: string, fallback: string | undefined) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      problems.push(`${formatPath(path) || '(root)'}: environment variable ${name} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, [...path, i], env, problems));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, expandEnv(v, [...path, k], env, problems)]),
    );
  }
  return value;
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
      const options = Object.freeze({
        weight: k.weight,
        group: k.group,
        rpm: k.rpm,
        tpm: k.tpm,
        maxConcurrent: k.maxConcurrent,
      });
      entries.push({ name: k.name, secret: k.key.trim(), field: `${field}.key`, options });
    }
  });
  if (u.keysFromEnv !== undefined) {
    for (const secret of splitKeys(env[u.keysFromEnv] ?? '')) entries.push(plain(secret, `${at}.keysFromEnv`));
  }
  if (u.keysFromFile !== undefined) {
    try {
      const lines = readFileSync(u.keysFromFile, 'utf8').split(/\r?\n/);
      for (const line of lines) {
        const secret = line.replace(/#.*$/, '').trim();
        if (secret !== '') entries.push(plain(secret, `${at}.keysFromFile`));
      }
    } catch (err) {
      problems.push(
        `${at}.keysFromFile: cannot read ${u.keysFromFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
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

  const base = new URL(u.baseUrl);
  return {
    name: u.name,
    strategy: u.strategy,
    sticky: u.sticky,
    prefix: u.prefix,
    origin: base.origin,
    basePath: base.pathname.replace(/\/+$/, ''),
    authHeader: u.authHeader,
    keys,
  };
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
  if (value !== null && typeof value === 'object' && !(value instanceof Key) && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
