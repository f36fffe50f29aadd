// What the environment does to a config document before validation: the KEYPOOL_* variables that
// override a few fields of any config, then `${VAR}` expansion in every string. Pure: the document and
// the environment in; the new document, which fields were overridden, and problems naming fields out.
import { formatPath } from './field-path.js';

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Variables that set a field whatever the config file says, so a container's environment works with any
 * mounted config. Precedence: a command-line flag (`--host`, `--port`) > these > the file. A value is
 * trimmed; an empty one is no override (as `${VAR:-default}` treats it), and it is never `${}`-expanded.
 */
export const ENV_OVERRIDES: readonly { readonly name: string; readonly path: readonly [string, string] }[] = [
  { name: 'KEYPOOL_HOST', path: ['server', 'host'] },
  { name: 'KEYPOOL_PORT', path: ['server', 'port'] },
  { name: 'KEYPOOL_STATE_FILE', path: ['state', 'file'] },
];

/**
 * A real config nests 5 levels (`upstreams[0].sticky.bodyFields[0]`). Anything far deeper, or larger, is
 * a mistake or a YAML alias trick, and is refused before it costs stack or time.
 */
export const MAX_DEPTH = 32;
export const MAX_NODES = 100_000;

export interface Prepared {
  readonly document: unknown;
  /** Field path (`server.port`) to the variable that set it, so a bad value names the variable. */
  readonly overridden: ReadonlyMap<string, string>;
}

export function prepareDocument(raw: unknown, env: Env, problems: string[]): Prepared {
  const { document, overridden } = applyOverrides(raw, env);
  const walk: Walk = { env, problems, skip: overridden, ancestors: new Set(), nodes: 0 };
  return { document: expand(document, [], walk), overridden };
}

function applyOverrides(raw: unknown, env: Env): Prepared {
  const overridden = new Map<string, string>();
  if (!isRecord(raw)) return { document: raw, overridden };
  const doc: Record<string, unknown> = { ...raw };
  for (const o of ENV_OVERRIDES) {
    const value = lookup(env, o.name)?.trim();
    if (value === undefined || value === '') continue;
    const [section, field] = o.path;
    const current = doc[section];
    // A section that is not a mapping gets its own error from the schema; the override cannot fix it.
    if (current !== undefined && !isRecord(current)) continue;
    doc[section] = { ...current, [field]: value };
    overridden.set(formatPath(o.path), o.name);
  }
  return { document: doc, overridden };
}

interface Walk {
  readonly env: Env;
  readonly problems: string[];
  readonly skip: ReadonlyMap<string, string>;
  readonly ancestors: Set<object>;
  nodes: number;
}

function expand(value: unknown, path: PropertyKey[], w: Walk): unknown {
  if (++w.nodes === MAX_NODES) w.problems.push(`(root): more than ${MAX_NODES} values; is this a config file?`);
  if (w.nodes >= MAX_NODES) return undefined;
  if (typeof value === 'string') {
    const at = formatPath(path);
    return w.skip.has(at) ? value : expandString(value, at, w);
  }
  if (typeof value !== 'object' || value === null) return value;
  if (w.ancestors.has(value)) {
    w.problems.push(`${formatPath(path)}: refers to itself (a YAML alias inside its own anchor)`);
    return undefined;
  }
  if (path.length >= MAX_DEPTH) {
    w.problems.push(`${formatPath(path)}: nested deeper than ${MAX_DEPTH} levels`);
    return undefined;
  }
  w.ancestors.add(value);
  try {
    if (Array.isArray(value)) return value.map((v: unknown, i) => expand(v, [...path, i], w));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expand(v, [...path, k], w)]));
  } finally {
    w.ancestors.delete(value);
  }
}

// `${VAR}`, `${VAR:-default}`, `${VAR-default}`; a default runs to the first `}`.
const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}/g;

/**
 * Expansion as in POSIX sh: `${VAR}` is VAR's value, '' included (set but empty is not unset), and an
 * error when VAR is unset; `${VAR:-d}` is d when VAR is unset or empty; `${VAR-d}` is d only when VAR is
 * unset. No nesting, no other forms: anything else that starts with `${` is an error rather than text
 * that would reach an upstream (a key ending in a stray `${KEY`).
 */
function expandString(text: string, at: string, w: Walk): string {
  if (!text.includes('${')) return text;
  let nested = false;
  const out = text.replace(ENV_REF, (_m, name: string, op: string | undefined, fallback: string | undefined) => {
    if (fallback?.includes('${') === true) nested = true;
    const v = lookup(w.env, name);
    if (op === ':-') return v === undefined || v === '' ? (fallback ?? '') : v;
    if (op === '-') return v ?? fallback ?? '';
    if (v !== undefined) return v;
    w.problems.push(`${at}: environment variable ${name} is not set`);
    return '';
  });
  if (nested) w.problems.push(`${at}: a default cannot hold another \${...}`);
  else if (text.replace(ENV_REF, '').includes('${')) {
    w.problems.push(`${at}: \${...} not understood; write \${VAR}, \${VAR:-default} or \${VAR-default}`);
  }
  return out;
}

/** Own string values only: an env map's `constructor` or `__proto__` is not a variable. */
export function lookup(env: Env, name: string): string | undefined {
  if (!Object.hasOwn(env, name)) return undefined;
  const v = env[name];
  return typeof v === 'string' ? v : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
