// Config rules for fallback chains, circuits and shared prefixes: a chain names upstreams that exist and
// speak its format; upstreams share a prefix only when they list their models; every refusal names the
// field. A fast-check property over random multi-upstream configs holds the loader to the same rules.
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

describe('any chain config', () => {
  it('loads exactly when every target exists and speaks the format; every problem names a chain field', () => {
    const upstreamArb = (name: string, i: number) =>
      fc.record({
        name: fc.constant(name),
        provider: fc.constantFrom<Prov>('openai', 'openrouter', 'anthropic', 'gemini'),
        fallbacks: fc.option(fc.array(fc.record({ upstream: fc.constantFrom(...NAMES, 'zz'), model: fc.option(fc.constantFrom('m1', 'm2'), { nil: undefined }) }), { minLength: 1, maxLength: 3 }), { nil: undefined }),
        context: fc.option(fc.array(fc.record({ upstream: fc.constantFrom(...NAMES) }), { minLength: 1, maxLength: 2 }), { nil: undefined }),
        prefix: fc.constant(`/p${i}`),
      });
    const docArb = fc.integer({ min: 1, max: 4 }).chain((n) => fc.tuple(...NAMES.slice(0, n).map((name, i) => upstreamArb(name, i))));
    fc.assert(
      fc.property(docArb, (ups) => {
        const raw = {
          upstreams: ups.map((u) => ({
            name: u.name,
            provider: u.provider,
            baseUrl: 'http://127.0.0.1:1/v1',
            prefix: u.prefix,
            keys: [KEY],
            ...(u.fallbacks === undefined ? {} : { fallbacks: u.fallbacks.map((f) => (f.model === undefined ? { upstream: f.upstream } : f)) }),
            ...(u.context === undefined ? {} : { errorFallbacks: { contextLengthExceeded: u.context } }),
          })),
        };
        const formats = new Map(ups.map((u) => [u.name, FORMAT_OF[u.provider]] as const));
        const valid = ups.every((u) => [...(u.fallbacks ?? []), ...(u.context ?? [])].every((f) => formats.get(f.upstream) === FORMAT_OF[u.provider]));
        const p = problems(raw);
        expect(p.length === 0).toBe(valid);
        for (const line of p) {
          expect(line).toMatch(/^upstreams\[\d\]\.(fallbacks|errorFallbacks\.contextLengthExceeded)\[\d\]\.upstream: \S/);
          expect(line).not.toContain(KEY);
        }
      }),
      { numRuns: 300 },
    );
  });
});
