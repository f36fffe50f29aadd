import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const ISSUE_DOC = `
server:
  host: 127.0.0.1
  port: 8787
upstreams:
  - name: openai
    prefix: /v1
    baseUrl: https://api.openai.com/v1
    keys:
      - sk-bare-secret-one
      - { name: team-b, key: "\${OPENAI_KEY_B}" }
    keysFromEnv: OPENAI_API_KEYS
    keysFromFile: KEYFILE
retry:
  maxRetries: 3
  maxWaitMs: 30000
  timeoutMs: 600000
`;

describe('loadConfigText', () => {
  it('accepts the documented example with keys from every source', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kp-cfg-'));
    const keyFile = join(dir, 'keys');
    writeFileSync(keyFile, '# team keys\nsk-file-1\n\nsk-file-2  # trailing comment\n');
    const { config, warnings } = loadConfigText(ISSUE_DOC.replace('KEYFILE', keyFile), {
      OPENAI_KEY_B: 'sk-team-b',
      OPENAI_API_KEYS: 'sk-env-1, sk-env-2\nsk-env-3',
    });
    const u = config.upstreams[0]!;
    expect(u.origin).toBe('https://api.openai.com');
    expect(u.basePath).toBe('/v1');
    expect(u.keys.map((k) => k.name)).toEqual(['openai-1', 'team-b', 'openai-2', 'openai-3', 'openai-4', 'openai-5', 'openai-6']);
    expect(u.keys.map((k) => k.reveal())).toEqual([
      'sk-bare-secret-one',
      'sk-team-b',
      'sk-env-1',
      'sk-env-2',
      'sk-env-3',
      'sk-file-1',
      'sk-file-2',
    ]);
    expect(warnings).toEqual([]);
    expect(config.retry).toMatchObject({ maxRetries: 3, maxWaitMs: 30000, timeoutMs: 600000 });
  });

  it('fills defaults from the schema and freezes the result', () => {
    const { config } = loadConfigText('upstreams: [{ name: a, baseUrl: "http://127.0.0.1:1/v1", keys: [k1] }]', {});
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8787, bodyLimitBytes: 50 * 1024 * 1024 });
    expect(config.upstreams[0]!.prefix).toBe('/v1');
    expect(config.upstreams[0]!.authHeader).toBe('authorization');
    expect(config.retry.maxRetries).toBe(3);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.retry)).toBe(true);
    expect(Object.isFrozen(config.upstreams[0]!.keys)).toBe(true);
  });

  it('expands ${VAR:-default}', () => {
    const { config } = loadConfigText(
      'server: { host: "${HOST:-0.0.0.0}" }\nupstreams: [{ name: a, baseUrl: "${BASE:-http://127.0.0.1:1}", keys: ["${K}"] }]',
      { K: 'secret-k' },
    );
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.upstreams[0]!.origin).toBe('http://127.0.0.1:1');
  });

  it.each([
    ['retry: { maxRetries: "three" }', 'retry.maxRetries: expected a number, got text that is not one'],
    ['retry: { maxRetries: [3] }', 'retry.maxRetries: Invalid input: expected number, received array'],
    ['retry: { maxRetries: -1 }', 'retry.maxRetries:'],
    ['server: { port: 70000 }', 'server.port:'],
  ])('names the field: %s', (snippet, expected) => {
    const doc = `${snippet}\nupstreams: [{ name: a, baseUrl: "http://127.0.0.1:1", keys: [k] }]`;
    const problems = problemsOf(() => loadConfigText(doc, {}));
    expect(problems.join('\n')).toContain(expected.split(':')[0]);
    if (expected.includes('expected')) expect(problems).toContain(expected);
  });

  it('names unknown fields', () => {
    const problems = problemsOf(() =>
      loadConfigText('retry: { maxRetriez: 3 }\nupstreams: [{ name: a, baseUrl: "http://127.0.0.1:1", keys: [k] }]', {}),
    );
    expect(problems).toEqual(['retry: Unrecognized key: "maxRetriez"']);
  });

  it('an upstream with no keys is an error that says so', () => {
    const problems = problemsOf(() =>
      loadConfigText('upstreams: [{ name: openai, baseUrl: "https://api.openai.com/v1", keysFromEnv: OPENAI_API_KEYS }]', {}),
    );
    expect(problems).toEqual([
      'upstreams[0].keys: upstream openai has no keys (is OPENAI_API_KEYS set?); list them in keys, keysFromEnv or keysFromFile',
    ]);
  });

  it('an unset variable is an error at its field', () => {
    const problems = problemsOf(() =>
      loadConfigText('upstreams: [{ name: a, baseUrl: "http://x", keys: [{ name: b, key: "${NOPE}" }] }]', {}),
    );
    expect(problems).toContain('upstreams[0].keys[0].key: environment variable NOPE is not set');
  });

  it('rejects bad URLs, duplicate prefixes and duplicate names', () => {
    expect(problemsOf(() => loadConfigText('upstreams: [{ name: a, baseUrl: "ftp://x", keys: [k] }]', {})).join()).toContain(
      'upstreams[0].baseUrl',
    );
    const dupPrefix = `upstreams:
  - { name: a, baseUrl: "http://127.0.0.1:1", keys: [k1] }
  - { name: b, baseUrl: "http://127.0.0.1:2", keys: [k2] }`;
    expect(problemsOf(() => loadConfigText(dupPrefix, {}))).toEqual(['upstreams[1].prefix: /v1 is already used by upstreams[0]; upstreams sharing a prefix must list their models (one may list none and take the rest)']);
    const dupName = 'upstreams: [{ name: a, baseUrl: "http://x", keys: [{name: n, key: k1}, {name: n, key: k2}] }]';
    expect(problemsOf(() => loadConfigText(dupName, {}))).toEqual(['upstreams[0].keys[1].key: key name n is used twice']);
  });

  it('the same secret twice is one key, with a warning that names no secret', () => {
    const { config, warnings } = loadConfigText('upstreams: [{ name: a, baseUrl: "http://x", keys: [sk-dup-1, sk-dup-1] }]', {});
    expect(config.upstreams[0]!.keys).toHaveLength(1);
    expect(warnings).toEqual(['upstreams[0].keys[1]: same secret as key a-1; using it once']);
  });

  it('a key pasted where a name or a path goes is not echoed back', () => {
    const secret = 'sk-proj-PASTEDaaaaaaaaaaaaaaaa1';
    const cases = [
      `upstreams: [{ name: a, baseUrl: "http://x", keysFromEnv: "${secret},${secret}2" }]`,
      `upstreams: [{ name: a, baseUrl: "http://x", keysFromFile: "${secret}" }]`,
      `upstreams: [{ name: a, baseUrl: "http://x", keys: [{ ${secret}: 1 }] }]`,
      `upstreams: [{ name: a, baseUrl: "http://x", keys: [k], ${secret}: "\${NOPE}" }]`,
    ];
    const problems = cases.map((doc) => problemsOf(() => loadConfigText(doc, {})).join('\n'));
    expect(problems[0]).toContain('upstreams[0].keysFromEnv: the name of an environment variable');
    expect(problems[1]).toContain('upstreams[0].keysFromFile: cannot read the file: ENOENT');
    expect(problems[2]).toContain('upstreams[0].keys[0]');
    expect(problems[3]).toBe('upstreams[0]["…"]: environment variable NOPE is not set');
    for (const p of problems) expect(p).not.toContain('PASTED');
  });

  it('keysFromEnv reads only real variables (not an env map\'s inherited constructor)', () => {
    expect(problemsOf(() => loadConfigText('upstreams: [{ name: a, baseUrl: "http://x", keysFromEnv: constructor }]', {}))).toEqual([
      'upstreams[0].keys: upstream a has no keys (is constructor set?); list them in keys, keysFromEnv or keysFromFile',
    ]);
  });

  it('shows an unknown field name that could be a typo', () => {
    expect(problemsOf(() => loadConfigText('upstreams: [{ name: a, baseUrl: "http://x", keys: [k], keysFromEnvv: X }]', {}))).toEqual([
      'upstreams[0]: Unrecognized key: "keysFromEnvv"',
    ]);
  });

  it('reads scheduling settings per key and per upstream', () => {
    const { config } = loadConfigText(
      `upstreams:
  - name: a
    baseUrl: "http://x"
    strategy: weighted
    sticky: {}
    keys: [{ name: k, key: s1, weight: 3, group: org-a, rpm: 60, tpm: 1000, maxConcurrent: 2 }, s2]`,
      {},
    );
    const u = config.upstreams[0]!;
    expect(u.strategy).toBe('weighted');
    expect(u.sticky).toEqual({ header: 'x-session-id', bodyFields: ['prompt_cache_key', 'user'], maxSessions: 10_000 });
    expect(u.keys[0]!.options).toEqual({ weight: 3, group: 'org-a', rpm: 60, tpm: 1000, maxConcurrent: 2 });
    expect(u.keys[1]!.options.weight).toBe(1);
    expect(config.queue).toEqual({ maxSize: 1000, clientHeader: 'x-agent-id', streamKeepAlive: false, keepAliveIntervalMs: 15_000 });
  });

  it('names a bad strategy or key setting', () => {
    const problems = problemsOf(() =>
      loadConfigText('upstreams: [{ name: a, baseUrl: "http://x", strategy: fastest, keys: [{ key: k, weight: 0 }] }]', {}),
    );
    expect(problems.join('\n')).toMatch(/^upstreams\[0\]\.strategy: /m);
    expect(problems.join('\n')).toMatch(/^upstreams\[0\]\.keys\[0\]/m);
  });

  it('reports YAML syntax errors', () => {
    expect(problemsOf(() => loadConfigText('upstreams: [', {}))[0]).toMatch(/YAML/);
  });

  it('reports an unreadable file', () => {
    expect(problemsOf(() => loadConfigFile('/nonexistent/keypool.yaml'))[0]).toContain('ENOENT');
  });
});
