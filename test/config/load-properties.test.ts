// fast-check properties of the config loader: whatever the document and the environment, it returns a
// deeply frozen config or throws a ConfigError whose every line names a field (or the document, or the
// variable that set the field), and no secret ever appears in a problem or a warning.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfigObject, loadConfigText, type Env, type LoadResult } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { Key } from '../../src/keys/key.js';

const FIELDS = [
  'server', 'host', 'port', 'bodyLimitBytes', 'log', 'level', 'upstreams', 'name', 'prefix', 'baseUrl', 'authHeader',
  'keys', 'key', 'weight', 'group', 'rpm', 'tpm', 'maxConcurrent', 'strategy', 'sticky', 'header', 'bodyFields',
  'maxSessions', 'keysFromEnv', 'retry', 'maxRetries', 'maxWaitMs', 'timeoutMs', 'connectTimeoutMs',
  'backoffBaseMs', 'backoffMaxMs', 'cooldown', 'backoffBaseMs', 'backoffMaxMs', 'outOfCreditMs',
  'maxMs', 'probeAfterMs', 'state', 'file', 'flushDelayMs', 'redis', 'url', 'replicaTimeoutMs', 'queue', 'maxSize',
  'clientHeader', 'streamKeepAlive', 'keepAliveIntervalMs',
  'fallbacks', 'modelFallbacks', 'errorFallbacks', 'contextLengthExceeded', 'circuit', 'failures', 'windowMs', 'openMs', 'models', 'model', 'upstream', 'provider',
] as const;
const VARS = ['A', 'B', 'PORT', 'KEYS', 'constructor', 'KEYPOOL_HOST', 'KEYPOOL_PORT', 'KEYPOOL_STATE_FILE'] as const;

/** Where a problem line may start: a field path, `(root)`, or `VAR (field.path)`. */
const PATH = String.raw`(?:[A-Za-z]+|\[\d+\]|\["…"\])(?:\.[A-Za-z]+|\[\d+\]|\["…"\])*`;
const PROBLEM_LINE = new RegExp(String.raw`^(?:\(root\)|KEYPOOL_[A-Z_]+ \(${PATH}\)|${PATH}): \S`);

const textLeaf = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom('${A}', '${A:-8787}', '${B-x}', '${PORT}', '${A:-${B}}', '${', '}', '0', '8787', '-1', '1e3', 'true', 'FALSE', ' ', ''),
  fc.constantFrom('round_robin', 'info', '/v1', 'http://127.0.0.1:1/v1', 'authorization', 'redis://127.0.0.1:1'),
);
const leaf = fc.oneof(
  textLeaf,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.bigInt(),
);
const fieldName = fc.oneof(fc.constantFrom(...FIELDS, '__proto__', 'toString'), fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/));
/** YAML-ish trees over the schema's own field names, so they get past the first strict object often. */
const tree = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('node'), { maxLength: 4 }),
    fc.dictionary(fieldName, tie('node'), { maxKeys: 6 }),
  ),
})).node;
const envArb: fc.Arbitrary<Env> = fc.dictionary(fc.constantFrom(...VARS), fc.oneof(textLeaf, fc.constantFrom('0.0.0.0', '9000', '70000')), {
  maxKeys: 5,
});

/** Runs the loader; a throw other than ConfigError fails the property. */
function attempt(load: () => LoadResult): { result: LoadResult } | { problems: readonly string[]; message: string } {
  try {
    return { result: load() };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { problems: err.problems, message: err.message };
  }
}

function expectWellFormed(problems: readonly string[], message: string): void {
  expect(problems.length).toBeGreaterThan(0);
  expect(message).toBe(problems.join('\n'));
  for (const p of problems) {
    expect(p).not.toContain('\n');
    expect(p).toMatch(PROBLEM_LINE);
  }
}

function expectDeepFrozen(v: unknown, seen = new Set<unknown>()): void {
  if (v === null || typeof v !== 'object' || seen.has(v)) return;
  seen.add(v);
  if (v instanceof Key) {
    expect(Object.isFrozen(v.options)).toBe(true);
    return;
  }
  expect(Object.isFrozen(v)).toBe(true);
  for (const x of Object.values(v)) expectDeepFrozen(x, seen);
}

describe('any document, any environment', () => {
  it('loadConfigObject: a frozen config or a ConfigError naming fields', () => {
    fc.assert(
      fc.property(fc.oneof(tree, fc.anything()), envArb, (raw, env) => {
        const r = attempt(() => loadConfigObject(raw, env));
        if ('result' in r) expectDeepFrozen(r.result.config);
        else expectWellFormed(r.problems, r.message);
      }),
      { numRuns: 500 },
    );
  });
  it('loadConfigText: YAML of any of those, or any text', () => {
    fc.assert(
      fc.property(fc.oneof(tree.map((t) => stringify(t) ?? ''), fc.string({ maxLength: 200 })), envArb, (text, env) => {
        const r = attempt(() => loadConfigText(text, env));
        if ('result' in r) expectDeepFrozen(r.result.config);
        else expectWellFormed(r.problems, r.message);
      }),
      { numRuns: 500 },
    );
  });
});

// Configs close to valid, with secrets in every place a key can come from, and mistakes around them.
const secretArb = fc.stringMatching(/^sk-[A-Za-z0-9]{16,28}$/);
const KEY_FILE_DIR = mkdtempSync(join(tmpdir(), 'kp-cfg-prop-'));

interface Case {
  readonly doc: Record<string, unknown>;
  readonly env: Env;
  readonly secrets: readonly string[];
}

/** Mostly the valid value, sometimes one of the mistakes. */
const mostly = <T>(valid: T, ...mistakes: T[]): fc.Arbitrary<T> =>
  fc.oneof({ arbitrary: fc.constant(valid), weight: 6 }, { arbitrary: fc.constantFrom(...mistakes), weight: 1 });

const keyEntry = (secret: string, i: number) =>
  fc.oneof(
    { arbitrary: fc.constant<unknown>(secret), weight: 3 },
    { arbitrary: fc.constant<unknown>(`${secret.slice(0, 10)} ${secret.slice(10)}`), weight: 1 },
    {
      arbitrary: fc.record(
        {
          key: fc.constant(secret),
          name: mostly(`named-${i}`, 'team-b', 'bad name', ''),
          weight: mostly<unknown>('2', 0, 'x', '${A}'),
          rpm: mostly<unknown>(60, '${PORT:-60}', -1, 1.5),
        },
        { requiredKeys: ['key'] },
      ),
      weight: 3,
    },
  );

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    secrets: fc.uniqueArray(secretArb, { minLength: 1, maxLength: 6 }),
    useEnvKeys: fc.boolean(),
    useFileKeys: fc.boolean(),
    useVarKey: fc.boolean(),
    dupSecret: mostly(false, true),
    typo: mostly(false, true),
    name: mostly('openai', 'bad name!', ''),
    baseUrl: mostly('https://api.openai.com/v1', 'ftp://x', 'not a url', '${A}'),
    server: fc.option(
      fc.record({ port: mostly<unknown>('${PORT:-1}', 8787, '${PORT}', 'x', 70000), host: mostly('0.0.0.0', '') }, { requiredKeys: [] }),
      { nil: undefined },
    ),
    env: fc.oneof(fc.constant({}), envArb),
  })
  .chain((c) => {
    const [first, ...rest] = c.secrets;
    const inline = rest.slice(0, 2);
    const fromEnv = rest.slice(2, 4);
    const fromFile = rest.slice(4);
    return fc.tuple(fc.constant(c), fc.tuple(...inline.map((secret, i) => keyEntry(secret, i)))).map(([c2, entries]) => {
      const keys: unknown[] = [...entries];
      const env: Record<string, string | undefined> = { ...c2.env };
      if (c2.useVarKey && first !== undefined) {
        keys.push({ name: 'from-var', key: '${SECRET_VAR}' });
        env.SECRET_VAR = first;
      } else if (first !== undefined) keys.push(first);
      if (c2.dupSecret && first !== undefined) keys.push(first);
      const upstream: Record<string, unknown> = { name: c2.name, baseUrl: c2.baseUrl, keys };
      if (c2.useEnvKeys) {
        upstream.keysFromEnv = 'POOL_KEYS';
        env.POOL_KEYS = fromEnv.join(', ');
      }
      if (c2.useFileKeys) {
        const file = join(KEY_FILE_DIR, `keys-${fromFile.join('').slice(0, 12) || 'none'}`);
        writeFileSync(file, fromFile.map((s) => `${s}  # a comment\n`).join(''));
        upstream.keysFromFile = fromFile.length > 0 ? file : join(KEY_FILE_DIR, 'missing');
      }
      const doc: Record<string, unknown> = { upstreams: [upstream] };
      if (c2.server !== undefined) doc.server = c2.server;
      if (c2.typo) doc.retry = { maxRetriez: 3 };
      return { doc, env, secrets: c2.secrets };
    });
  });

function expectNoSecret(text: string, secrets: readonly string[]): void {
  for (const s of secrets) {
    expect(text).not.toContain(s);
    expect(text).not.toContain(s.slice(6, 18));
  }
}

describe('secrets', () => {
  it('never appear in a problem or a warning, whatever else is wrong', () => {
    fc.assert(
      fc.property(caseArb, ({ doc, env, secrets }) => {
        const r = attempt(() => loadConfigObject(doc, env));
        if ('result' in r) {
          expectDeepFrozen(r.result.config);
          expectNoSecret(r.result.warnings.join('\n'), secrets);
          // Every key that made it in is one of the secrets, intact.
          for (const k of r.result.config.upstreams[0]!.keys) expect(secrets).toContain(k.reveal());
        } else {
          expectWellFormed(r.problems, r.message);
          expectNoSecret(r.message, secrets);
        }
      }),
      { numRuns: 500 },
    );
  });
  it('nor when the YAML around them is broken', () => {
    const breakage = fc.array(
      fc.tuple(fc.nat(), fc.constantFrom('{', '[', ']', ':', '"', "'", '&a ', '*a', '!t ', '\t', '\n', '- ', '#', '${', '}', '\\', '? ')),
      { minLength: 1, maxLength: 4 },
    );
    fc.assert(
      fc.property(caseArb, breakage, ({ doc, env, secrets }, edits) => {
        let text = stringify(doc);
        for (const [at, ins] of edits) {
          const i = at % (text.length + 1);
          text = text.slice(0, i) + ins + text.slice(i);
        }
        const r = attempt(() => loadConfigText(text, env));
        if ('result' in r) expectNoSecret(r.result.warnings.join('\n'), secrets);
        else {
          expectWellFormed(r.problems, r.message);
          expectNoSecret(r.message, secrets);
        }
      }),
      { numRuns: 500 },
    );
  });
});
