// The README's "Fallbacks and routing" section against the code: every YAML block in it loads, and the
// refusal it quotes for a chain that mixes formats is the loader's own.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const section = readme.slice(readme.indexOf('## Fallbacks and routing'), readme.indexOf('\n## ', readme.indexOf('## Fallbacks and routing') + 5));
const yamlBlocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
/** Every variable a block names (keysFromEnv values too), set to a distinct dummy key. */
const envFor = (text: string): Record<string, string> =>
  Object.fromEntries([...text.matchAll(/keysFromEnv: (\w+)/g)].map((m, i) => [m[1]!, `sk-readme-dummy-key-${i}-0123456789`]));

describe('README: Fallbacks and routing', () => {
  it('has its examples', () => {
    expect(yamlBlocks.length).toBeGreaterThanOrEqual(2);
  });

  it.each(yamlBlocks.map((b, i) => [i, b] as const))('YAML block %i loads without warnings', (_i, text) => {
    const { config, warnings } = loadConfigText(text, envFor(text));
    expect(warnings).toEqual([]);
    expect(config.upstreams.length).toBeGreaterThan(1);
  });

  it('the worked example chains openai to azure then openrouter with a rewritten model', () => {
    const text = yamlBlocks[0]!;
    const { config } = loadConfigText(text, envFor(text));
    const openai = config.upstreams.find((u) => u.name === 'openai')!;
    expect(openai.fallbacks).toEqual([
      { upstream: 'azure', model: undefined },
      { upstream: 'openrouter', model: 'openai/gpt-4o' },
    ]);
    expect(openai.circuit).toBeDefined();
    expect(config.upstreams.find((u) => u.name === 'azure')!.basePath).toBe('/openai/v1');
  });

  it('quotes the loader’s own refusal for a chain that mixes formats', () => {
    const quoted = /`(upstreams\[0\]\.fallbacks\[1\]\.upstream: [^`]+)`/.exec(section)?.[1];
    expect(quoted).toBeDefined();
    const text = `upstreams:
  - { name: openai, baseUrl: "http://127.0.0.1:1/v1", keys: [sk-readme-a-0123456789], fallbacks: [{ upstream: openai, model: gpt-4.1 }, { upstream: claude }] }
  - { name: claude, provider: anthropic, keys: [sk-readme-b-0123456789] }`;
    let problems: readonly string[] = [];
    try {
      loadConfigText(text, {});
    } catch (err) {
      if (err instanceof ConfigError) problems = err.problems;
    }
    expect(problems).toEqual([quoted]);
  });
});
