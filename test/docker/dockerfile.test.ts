// The Dockerfile and .dockerignore readers the image replay relies on: row by row, and properties
// (ENV and exec-form values survive any quoting; a continued line reads as one).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { envPairs, form, logicalLines, parseDockerfile, splitWords } from './dockerfile.js';
import { isIgnored, parseDockerignore } from './dockerignore.js';

describe('parseDockerfile', () => {
  it('reads stages, COPY flags, ENV pairs, forms and HEALTHCHECK options', () => {
    const stages = parseDockerfile(
      [
        '# comment',
        'FROM node:24-slim AS build',
        'WORKDIR /app',
        'COPY --from=deps --chown=node:node /app/node_modules ./node_modules',
        'COPY ["a b.txt", "c", "./"]',
        'RUN npm ci \\',
        '  # a comment inside a continuation',
        '  && npx tsc -p tsconfig.json',
        'FROM node:24-slim',
        'ENV A=1 B="two words" C=x\\ y',
        'ENV LEGACY some value',
        'USER node',
        'HEALTHCHECK --interval=10s --timeout=3s CMD ["node", "main.js", "health"]',
        'ENTRYPOINT ["node", "/app/main.js"]',
        'CMD serve --pretty',
      ].join('\n'),
    );
    expect(stages.map((s) => [s.base, s.name])).toEqual([
      ['node:24-slim', 'build'],
      ['node:24-slim', undefined],
    ]);
    expect(stages[0]?.instructions).toEqual([
      { kind: 'WORKDIR', path: '/app' },
      { kind: 'COPY', from: 'deps', chown: 'node:node', sources: ['/app/node_modules'], dest: './node_modules' },
      { kind: 'COPY', from: undefined, chown: undefined, sources: ['a b.txt', 'c'], dest: './' },
      { kind: 'RUN', form: { exec: false, shell: 'npm ci  && npx tsc -p tsconfig.json' } },
    ]);
    expect(stages[1]?.instructions).toEqual([
      { kind: 'ENV', vars: [['A', '1'], ['B', 'two words'], ['C', 'x y']] },
      { kind: 'ENV', vars: [['LEGACY', 'some value']] },
      { kind: 'USER', user: 'node' },
      { kind: 'HEALTHCHECK', options: { interval: '10s', timeout: '3s' }, form: { exec: true, argv: ['node', 'main.js', 'health'] } },
      { kind: 'ENTRYPOINT', form: { exec: true, argv: ['node', '/app/main.js'] } },
      { kind: 'CMD', form: { exec: false, shell: 'serve --pretty' } },
    ]);
  });

  it('refuses what the replay cannot stand for', () => {
    expect(() => parseDockerfile('WORKDIR /x')).toThrow('WORKDIR before any FROM');
    expect(() => parseDockerfile('FROM a\nADD https://x/y /z')).toThrow('ADD');
    expect(() => parseDockerfile('FROM a\nCOPY --parents a b')).toThrow('unknown flag --parents');
    expect(() => parseDockerfile('FROM a\nFROBNICATE x')).toThrow('unknown instruction FROBNICATE');
  });

  it('ENV values survive any quoting', () => {
    const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,10}$/);
    const value = fc.string({ maxLength: 20 }).filter((v) => !v.includes('\n') && !v.includes('\r'));
    fc.assert(
      fc.property(fc.array(fc.tuple(name, value), { minLength: 1, maxLength: 5 }), (pairs) => {
        const line = pairs.map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(' ');
        expect(envPairs(line)).toEqual(pairs);
      }),
    );
  });

  it('exec form is any JSON array of strings; anything else is shell form', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 10 }), { maxLength: 5 }), (argv) => {
        expect(form(JSON.stringify(argv))).toEqual({ exec: true, argv });
      }),
    );
    expect(form('["a", 1]')).toEqual({ exec: false, shell: '["a", 1]' });
    expect(form('[not json')).toEqual({ exec: false, shell: '[not json' });
  });

  it('a continued line reads as one, whatever the words', () => {
    const word = fc.stringMatching(/^[A-Za-z0-9_./=-]{1,8}$/);
    fc.assert(
      fc.property(fc.array(word, { minLength: 2, maxLength: 6 }), (words) => {
        expect(logicalLines(`RUN ${words.join(' \\\n  ')}`)).toHaveLength(1);
        expect(splitWords(logicalLines(`RUN ${words.join(' \\\n  ')}`)[0] ?? '')).toEqual(['RUN', ...words]);
      }),
    );
  });
});

describe('.dockerignore', () => {
  const rules = parseDockerignore('# c\nnode_modules\n/dist/\n*.md\n**/*.tmp\ntest\n!test/keep.ts\nbench/results/*.json\n');
  it.each([
    ['node_modules', true],
    ['node_modules/fastify/package.json', true],
    ['dist/src/main.js', true],
    ['README.md', true],
    ['docs/ARCHITECTURE.md', false],
    ['src/a.tmp', true],
    ['a.tmp', true],
    ['test/cli.test.ts', true],
    ['test/keep.ts', false],
    ['bench/results/x.json', true],
    ['bench/results/x.md', false],
    ['src/main.ts', false],
    ['package.json', false],
    ['./package.json', false],
  ])('%s ignored: %s', (path, ignored) => {
    expect(isIgnored(rules, path)).toBe(ignored);
  });
});
