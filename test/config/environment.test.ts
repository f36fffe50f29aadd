// ${VAR} expansion (POSIX sh semantics), number/boolean fields filled from text, and the KEYPOOL_*
// overrides that apply to any config file.
import { describe, expect, it } from 'vitest';
import { loadConfigObject, loadConfigText, type Env } from '../../src/config/load.js';
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

const UPSTREAM = 'upstreams: [{ name: a, baseUrl: "http://127.0.0.1:1/v1", keys: [sk-test-key-1] }]';
const load = (yaml: string, env: Env = {}) => loadConfigText(`${yaml}\n${UPSTREAM}`, env).config;

describe('${VAR} expansion, as in POSIX sh', () => {
  const file = (ref: string) => load(`state: { file: "/data/${ref}.json" }`).state.file;
  const fileWith = (ref: string, env: Env) => load(`state: { file: "/data/${ref}.json" }`, env).state.file;
  it.each([
    // [reference, env, expanded]
    ['${V}', { V: 'x' }, '/data/x.json'],
    ['${V}', { V: '' }, '/data/.json'],
    ['${V:-d}', {}, '/data/d.json'],
    ['${V:-d}', { V: '' }, '/data/d.json'],
    ['${V:-d}', { V: 'x' }, '/data/x.json'],
    ['${V-d}', {}, '/data/d.json'],
    ['${V-d}', { V: '' }, '/data/.json'],
    ['${V-d}', { V: 'x' }, '/data/x.json'],
    ['${V:-}', {}, '/data/.json'],
    ['${A}-${B:-b}', { A: 'a' }, '/data/a-b.json'],
  ] as const)('%s with %j -> %s', (ref, env, expected) => {
    expect(fileWith(ref, env)).toBe(expected);
  });
  it('no reference: text as it is', () => {
    expect(file('plain$dollar')).toBe('/data/plain$dollar.json');
  });

  it('set but empty is not "not set"', () => {
    expect(problemsOf(() => load('state: { file: "${V}" }', { V: '' }))).toEqual(['state.file: Too small: expected string to have >=1 characters']);
  });
  it('unset without a default is an error naming the field', () => {
    expect(problemsOf(() => load('state: { file: "${NOPE}" }'))).toEqual(['state.file: environment variable NOPE is not set']);
  });
  it('only own string values of the environment are variables', () => {
    expect(problemsOf(() => load('state: { file: "${constructor}" }'))).toEqual([
      'state.file: environment variable constructor is not set',
    ]);
  });
  it.each([
    ['${PORT:8787}', 'server.port: ${...} not understood; write ${VAR}, ${VAR:-default} or ${VAR-default}'],
    ['${PORT', 'server.port: ${...} not understood; write ${VAR}, ${VAR:-default} or ${VAR-default}'],
    ['${1}', 'server.port: ${...} not understood; write ${VAR}, ${VAR:-default} or ${VAR-default}'],
    ['${A:-${B}}', 'server.port: a default cannot hold another ${...}'],
  ])('%s is an error, never text sent on', (ref, problem) => {
    expect(problemsOf(() => load(`server: { port: "${ref}" }`, { PORT: '1', A: '1', B: '2' }))).toEqual([problem]);
  });
});

describe('number and boolean fields filled by expansion', () => {
  it('port: ${PORT:-8787} (unquoted, block style)', () => {
    const doc = 'server:\n  port: ${PORT:-8787}';
    expect(load(doc).server.port).toBe(8787);
    expect(load(doc, { PORT: '9000' }).server.port).toBe(9000);
    expect(load(doc, { PORT: '' }).server.port).toBe(8787);
    expect(load(doc, { PORT: ' 9001\n' }).server.port).toBe(9001);
  });
  it.each([
    ['', 'server.port: expected a number, got an empty value (an empty variable?)'],
    ['   ', 'server.port: expected a number, got an empty value (an empty variable?)'],
    ['abc', 'server.port: expected a number, got text that is not one'],
    ['0x1F', 'server.port: expected a number, got text that is not one'],
    ['Infinity', 'server.port: expected a number, got text that is not one'],
    ['80.5', 'server.port: Invalid input: expected int, received number'],
    ['70000', 'server.port: Too big: expected number to be <=65535'],
  ])('PORT=%j: %s', (value, problem) => {
    expect(problemsOf(() => load('server: { port: "${PORT}" }', { PORT: value }))).toEqual([problem]);
  });
  it('every number field converts', () => {
    const c = load(
      `retry: { maxRetries: "\${R}", maxWaitMs: "1e3" }
cooldown: { maxMs: "\${M:-60000}" }
queue: { maxSize: "\${Q-5}", streamKeepAlive: "\${KA}" }`,
      { R: '7', KA: 'TRUE' },
    );
    expect([c.retry.maxRetries, c.retry.maxWaitMs, c.cooldown.maxMs, c.queue.maxSize, c.queue.streamKeepAlive]).toEqual([7, 1000, 60_000, 5, true]);
  });
  it.each([
    ['false', false],
    [' False ', false],
    ['true', true],
  ])('streamKeepAlive %j -> %j', (value, expected) => {
    expect(load('queue: { streamKeepAlive: "${KA}" }', { KA: value }).queue.streamKeepAlive).toBe(expected);
  });
  it.each(['yes', '1', ''])('streamKeepAlive %j is an error that says what is expected', (value) => {
    const problems = problemsOf(() => load('queue: { streamKeepAlive: "${KA}" }', { KA: value }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^queue\.streamKeepAlive: expected true or false, got /);
  });
  it('keys that are all digits stay text, and per-key numbers convert', () => {
    const { config } = loadConfigText(
      'upstreams: [{ name: a, baseUrl: "http://x", keys: ["${K1}", { name: n, key: "${K2}", weight: "${W}", rpm: "${RPM:-60}" }] }]',
      { K1: '0123456789', K2: '42', W: '2.5' },
    );
    const [k1, k2] = config.upstreams[0]!.keys;
    expect([k1!.reveal(), k2!.reveal(), k2!.options.weight, k2!.options.rpm]).toEqual(['0123456789', '42', 2.5, 60]);
  });
  it('a key YAML reads as a number is refused, not turned back into (other) text', () => {
    expect(problemsOf(() => loadConfigText('upstreams: [{ name: a, baseUrl: "http://x", keys: [0123] }]', {}))).toEqual([
      'upstreams[0].keys[0]: a key must be text: quote it in YAML when it looks like a number',
    ]);
  });
  it('a { key } entry with one bad field names that field, not "Invalid input"', () => {
    expect(problemsOf(() => loadConfigText('upstreams: [{ name: a, baseUrl: "http://x", keys: [{ key: k, rpm: "${R}" }] }]', { R: 'x' }))).toEqual([
      'upstreams[0].keys[0].rpm: expected a number, got text that is not one',
    ]);
  });
});

describe('KEYPOOL_* overrides: flag > env > file', () => {
  const FILE = 'server: { host: 127.0.0.1, port: 8787 }\nstate: { file: ./keypool-state.json }';
  it('override any config file', () => {
    const c = load(FILE, { KEYPOOL_HOST: '0.0.0.0', KEYPOOL_PORT: '9999', KEYPOOL_STATE_FILE: '/data/keypool-state.json' });
    expect([c.server.host, c.server.port, c.state.file]).toEqual(['0.0.0.0', 9999, '/data/keypool-state.json']);
  });
  it('apply where the file has no such section', () => {
    const c = load('', { KEYPOOL_HOST: '::', KEYPOOL_PORT: '1234', KEYPOOL_STATE_FILE: 's.json' });
    expect([c.server.host, c.server.port, c.state.file, c.server.bodyLimitBytes]).toEqual(['::', 1234, 's.json', 50 * 1024 * 1024]);
  });
  it('empty or blank is no override; values are trimmed', () => {
    const c = load(FILE, { KEYPOOL_HOST: '', KEYPOOL_PORT: '  ', KEYPOOL_STATE_FILE: ' /d/s.json\n' });
    expect([c.server.host, c.server.port, c.state.file]).toEqual(['127.0.0.1', 8787, '/d/s.json']);
  });
  it.each([
    ['abc', 'KEYPOOL_PORT (server.port): expected a number, got text that is not one'],
    ['70000', 'KEYPOOL_PORT (server.port): Too big: expected number to be <=65535'],
    ['-1', 'KEYPOOL_PORT (server.port): Too small: expected number to be >=0'],
  ])('a bad KEYPOOL_PORT=%s names the variable and the field', (value, problem) => {
    expect(problemsOf(() => load(FILE, { KEYPOOL_PORT: value }))).toEqual([problem]);
  });
  it('beat the file even where its own ${VAR} would fail', () => {
    expect(load('server: { port: "${UNSET_PORT}" }', { KEYPOOL_PORT: '4321' }).server.port).toBe(4321);
  });
  it('are taken as they are, never expanded', () => {
    expect(load(FILE, { KEYPOOL_STATE_FILE: '/x/${HOME}', HOME: '/root' }).state.file).toBe('/x/${HOME}');
  });
  it('a section that is not a mapping keeps its own error', () => {
    expect(problemsOf(() => load('server: 5', { KEYPOOL_PORT: '1' }))).toEqual(['server: Invalid input: expected object, received number']);
  });
  it('loadConfigObject applies them too (the loader is a function of document and env)', () => {
    const { config } = loadConfigObject({ upstreams: [{ name: 'a', baseUrl: 'http://x', keys: ['k'] }] }, { KEYPOOL_PORT: '7' });
    expect(config.server.port).toBe(7);
  });
});

describe('documents that are not configs', () => {
  it('a YAML alias cycle is an error, not a stack overflow', () => {
    expect(problemsOf(() => loadConfigText(`a: &x\n  b: *x\n${UPSTREAM}`, {}))).toEqual(['a.b: refers to itself (a YAML alias inside its own anchor)']);
  });
  it('an alias bomb is a ConfigError', () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) {
      const [name, prev] = [String.fromCharCode(97 + i), String.fromCharCode(96 + i)];
      lines.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(', ')}]`);
    }
    expect(problemsOf(() => loadConfigText(lines.join('\n'), {}))[0]).toMatch(/^\(root\): YAML: Excessive alias count/);
  });
  it('deep nesting is refused by depth', () => {
    const deep = `x: ${'['.repeat(40)}${']'.repeat(40)}\n${UPSTREAM}`;
    expect(problemsOf(() => loadConfigText(deep, {}))).toEqual([`x${'[0]'.repeat(31)}: nested deeper than 32 levels`]);
  });
  it('a document of more values than any config has is refused before validation', () => {
    const raw = { upstreams: [{ name: 'a', baseUrl: 'http://x', keys: Array.from({ length: 100_001 }, (_, i) => `k${i}`) }] };
    expect(problemsOf(() => loadConfigObject(raw, {}))).toEqual(['(root): more than 100000 values; is this a config file?']);
  });
  it('YAML errors quote nothing from the document', () => {
    const problems = problemsOf(() => loadConfigText('keys: [*sk-secret-alias-123]\nx: !sk-secret-tag-456 y\nz: "sk-secret-q\\q"', {}));
    expect(problems.join('\n')).not.toMatch(/sk-secret/);
    expect(problems.every((p) => p.startsWith('(root): YAML: '))).toBe(true);
  });
});
