// Config rules for fallback chains, circuits and shared prefixes: a chain names upstreams that exist and
// speak its format, never asks its own upstream the same request again, never names a target twice;
// upstreams share a prefix only when they list their models; every refusal names the field. A fast-check
// property over random multi-upstream configs holds the loader to the same rules.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadConfigObject } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const KEY = 'sk-chain-config-test-key-0123456789';
const up = (name: string, extra: Record<string, unknown> = {}) => ({ name, baseUrl: 'http://127.0.0.1:1/v1', keys: [KEY], ...extra });

function problems(raw: unknown): readonly string[] {
  try {
    loadConfigObject(raw, {});
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
}

describe('chain config', () => {
  it('loads a chain, per-model chains, a context-length chain and a circuit with its defaults', () => {
    const { config } = loadConfigObject(
      {
        upstreams: [
          up('openai', {
            fallbacks: [{ upstream: 'azure' }, { upstream: 'openrouter', model: 'openai/gpt-4o' }],
            modelFallbacks: { 'gpt-4o-mini*': [{ upstream: 'openrouter', model: 'openai/gpt-4o-mini' }] },
            errorFallbacks: { contextLengthExceeded: [{ upstream: 'openai', model: 'gpt-4.1' }] },
            circuit: {},
          }),
          up('azure', { prefix: '/azure' }),
          up('openrouter', { prefix: '/openrouter' }),
        ],
      },
      {},
    );
    const u = config.upstreams[0]!;
    expect(u.fallbacks).toEqual([
      { upstream: 'azure', model: undefined },
      { upstream: 'openrouter', model: 'openai/gpt-4o' },
    ]);
    expect(u.modelFallbacks[0]!.pattern.test('gpt-4o-mini-2024')).toBe(true);
    expect(u.contextLengthFallbacks).toEqual([{ upstream: 'openai', model: 'gpt-4.1' }]);
    expect(u.circuit).toEqual({ failures: 5, windowMs: 10_000, openMs: 30_000 });
    expect(config.upstreams[1]!.circuit).toBeUndefined();
    expect(Object.isFrozen(u.fallbacks)).toBe(true);
  });

  it('refuses a chain that mixes wire formats, naming the field', () => {
    const p = problems({ upstreams: [up('openai', { fallbacks: [{ upstream: 'claude' }] }), up('claude', { provider: 'anthropic', prefix: '/anthropic' })] });
    expect(p).toEqual(['upstreams[0].fallbacks[0].upstream: claude speaks anthropic and openai speaks openai; a chain stays within one wire format']);
    const q = problems({
      upstreams: [up('openai', { errorFallbacks: { contextLengthExceeded: [{ upstream: 'gem' }] } }), up('gem', { provider: 'gemini', baseUrl: 'http://127.0.0.1:1' })],
    });
    expect(q).toEqual(['upstreams[0].errorFallbacks.contextLengthExceeded[0].upstream: gem speaks gemini and openai speaks openai; a chain stays within one wire format']);
  });

  it('refuses a target that does not exist without repeating what was written there', () => {
    const p = problems({ upstreams: [up('openai', { modelFallbacks: { 'gpt-*': [{ upstream: KEY }] } })] });
    expect(p).toEqual(['upstreams[0].modelFallbacks["…"][0].upstream: names no upstream; the upstreams are openai']);
    expect(p.join('\n')).not.toContain(KEY);
  });

  it('refuses a target that is its own upstream asked the same request again, naming the field', () => {
    const self = 'same request to the same pool; name another upstream or another model';
    expect(problems({ upstreams: [up('openai', { fallbacks: [{ upstream: 'openai' }] })] })).toEqual([`upstreams[0].fallbacks[0].upstream: openai again with the ${self}`]);
    expect(problems({ upstreams: [up('b', { prefix: '/b' }), up('openai', { errorFallbacks: { contextLengthExceeded: [{ upstream: 'b' }, { upstream: 'openai' }] } })] })).toEqual([
      `upstreams[1].errorFallbacks.contextLengthExceeded[1].upstream: openai again with the ${self}`,
    ]);
    // For a per-model chain the request's model is the key: naming it again is no change either.
    const p = problems({ upstreams: [up('openai', { modelFallbacks: { gpt: [{ upstream: 'openai' }], [KEY]: [{ upstream: 'openai', model: KEY }] } })] });
    expect(p).toEqual([`upstreams[0].modelFallbacks.gpt[0].upstream: openai again with the ${self}`, `upstreams[0].modelFallbacks["…"][0].upstream: openai again with the ${self}`]);
    expect(p.join('\n')).not.toContain(KEY);
  });

  it('takes its own upstream with another model', () => {
    expect(problems({ upstreams: [up('openai', { fallbacks: [{ upstream: 'openai', model: 'gpt-4o-mini' }] })] })).toEqual([]);
    expect(problems({ upstreams: [up('openai', { modelFallbacks: { 'gpt-4o': [{ upstream: 'openai', model: 'gpt-4.1' }] } })] })).toEqual([]);
    expect(problems({ upstreams: [up('openai', { errorFallbacks: { contextLengthExceeded: [{ upstream: 'openai', model: 'gpt-4.1' }] } })] })).toEqual([]);
  });

  it('refuses the same target twice in one chain, naming both', () => {
    const ups = (extra: Record<string, unknown>) => ({ upstreams: [up('a', extra), up('b', { prefix: '/b' })] });
    expect(problems(ups({ fallbacks: [{ upstream: 'b' }, { upstream: 'b', model: 'm' }, { upstream: 'b' }] }))).toEqual([
      'upstreams[0].fallbacks[2].upstream: the same target as upstreams[0].fallbacks[0]; list each target once',
    ]);
    const p = problems(ups({ modelFallbacks: { 'gpt-*': [{ upstream: 'b', model: KEY }, { upstream: 'a', model: 'x' }, { upstream: 'b', model: KEY }] } }));
    expect(p).toEqual(['upstreams[0].modelFallbacks["…"][2].upstream: the same target as upstreams[0].modelFallbacks["…"][0]; list each target once']);
    expect(p.join('\n')).not.toContain(KEY);
    expect(problems(ups({ errorFallbacks: { contextLengthExceeded: [{ upstream: 'a', model: 'big' }, { upstream: 'a', model: 'big' }] } }))).toEqual([
      'upstreams[0].errorFallbacks.contextLengthExceeded[1].upstream: the same target as upstreams[0].errorFallbacks.contextLengthExceeded[0]; list each target once',
    ]);
    // Separate chains may share a target: each is walked on its own.
    expect(problems(ups({ fallbacks: [{ upstream: 'b' }], modelFallbacks: { 'gpt-*': [{ upstream: 'b' }] }, errorFallbacks: { contextLengthExceeded: [{ upstream: 'b' }] } }))).toEqual([]);
  });

  it('refuses empty chains and unknown fields', () => {
    expect(problems({ upstreams: [up('openai', { fallbacks: [] })] })[0]).toMatch(/^upstreams\[0\]\.fallbacks: /);
    expect(problems({ upstreams: [up('openai', { fallbacks: [{ upstream: 'openai', modle: 'x' }] })] })[0]).toMatch(/^upstreams\[0\]\.fallbacks\[0\]/);
    expect(problems({ upstreams: [up('openai', { circuit: { failures: 0 } })] })[0]).toMatch(/^upstreams\[0\]\.circuit\.failures: /);
  });

  it('upstreams share a prefix only when they list their models (one may take the rest), in one format', () => {
    expect(problems({ upstreams: [up('a', { models: ['gpt-*'] }), up('b')] })).toEqual([]);
    expect(problems({ upstreams: [up('a', { models: ['gpt-*'] }), up('b', { models: ['o1*'] })] })).toEqual([]);
    expect(problems({ upstreams: [up('a'), up('b')] })).toEqual([
      'upstreams[1].prefix: /v1 is already used by upstreams[0]; upstreams sharing a prefix must list their models (one may list none and take the rest)',
    ]);
    expect(problems({ upstreams: [up('a', { models: ['claude-*'], provider: 'anthropic', prefix: '/v1' }), up('b')] })).toEqual([
      'upstreams[1].prefix: /v1 is shared with an upstream of another wire format (anthropic); one prefix, one format',
    ]);
  });
});

const NAMES = ['a', 'b', 'c', 'd'] as const;
const FORMAT_OF = { openai: 'openai', openrouter: 'openai', anthropic: 'anthropic', gemini: 'gemini' } as const;
type Prov = keyof typeof FORMAT_OF;

type Step = { readonly upstream: string; readonly model?: string | undefined };

describe('any chain config', () => {
  it('refuses exactly the steps that name no upstream, cross formats, repeat the request on their own upstream or repeat a target; each by its field', () => {
    const stepArb = (targets: readonly string[]) =>
      fc.record({ upstream: fc.constantFrom(...targets), model: fc.option(fc.constantFrom('mx', 'my'), { nil: undefined }) });
    const chainArb = (targets: readonly string[], max: number) => fc.option(fc.array(stepArb(targets), { minLength: 1, maxLength: max }), { nil: undefined });
    const upstreamArb = (name: string, i: number) =>
      fc.record({
        name: fc.constant(name),
        provider: fc.constantFrom<Prov>('openai', 'openrouter', 'anthropic', 'gemini'),
        fallbacks: chainArb([...NAMES, 'zz'], 3),
        // Keys that are letters only, so a problem shows them (`modelFallbacks.mx[0]`) and the test can tell them apart.
        byModel: fc.option(fc.dictionary(fc.constantFrom('mx', 'my'), fc.array(stepArb(NAMES), { minLength: 1, maxLength: 3 }), { minKeys: 1, maxKeys: 2 }), { nil: undefined }),
        context: chainArb(NAMES, 2),
        prefix: fc.constant(`/p${i}`),
      });
    const docArb = fc.integer({ min: 1, max: 4 }).chain((n) => fc.tuple(...NAMES.slice(0, n).map((name, i) => upstreamArb(name, i))));
    const written = (list: readonly Step[]) => list.map((f) => (f.model === undefined ? { upstream: f.upstream } : f));
    fc.assert(
      fc.property(docArb, (ups) => {
        const raw = {
          upstreams: ups.map((u) => ({
            name: u.name,
            provider: u.provider,
            baseUrl: 'http://127.0.0.1:1/v1',
            prefix: u.prefix,
            keys: [KEY],
            ...(u.fallbacks === undefined ? {} : { fallbacks: written(u.fallbacks) }),
            ...(u.byModel === undefined ? {} : { modelFallbacks: Object.fromEntries(Object.entries(u.byModel).map(([m, list]) => [m, written(list)])) }),
            ...(u.context === undefined ? {} : { errorFallbacks: { contextLengthExceeded: written(u.context) } }),
          })),
        };
        const formats = new Map(ups.map((u) => [u.name, FORMAT_OF[u.provider]] as const));
        // The model: one line per bad step, at the step's field; a chain's own model is its key (none for the others).
        const expected: string[] = [];
        ups.forEach((u, i) => {
          const chains: [string, readonly Step[] | undefined, string | undefined][] = [
            ['fallbacks', u.fallbacks, undefined],
            ...Object.entries(u.byModel ?? {}).map(([m, list]): [string, readonly Step[], string] => [`modelFallbacks.${m}`, list, m]),
            ['errorFallbacks.contextLengthExceeded', u.context, undefined],
          ];
          for (const [field, list, model] of chains) {
            (list ?? []).forEach((f, j) => {
              const exists = formats.has(f.upstream);
              const sameFormat = formats.get(f.upstream) === FORMAT_OF[u.provider];
              const self = f.upstream === u.name && (f.model ?? model) === model;
              const repeat = (list ?? []).slice(0, j).some((g) => g.upstream === f.upstream && g.model === f.model);
              if (!exists || !sameFormat || self || repeat) expected.push(`upstreams[${i}].${field}[${j}].upstream`);
            });
          }
        });
        const p = problems(raw);
        expect(p.map((line) => line.slice(0, line.indexOf(': '))).sort()).toEqual(expected.sort());
        for (const line of p) {
          expect(line).toMatch(/^upstreams\[\d\]\.(fallbacks|modelFallbacks\.m[xy]|errorFallbacks\.contextLengthExceeded)\[\d\]\.upstream: \S/);
          expect(line).not.toContain(KEY);
        }
      }),
      { numRuns: 300 },
    );
  });
});
