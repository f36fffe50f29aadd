// What a fallback changes in a request: the top-level `model` of a JSON body (every occurrence) and the
// model named in a Gemini or Azure path; nothing else, byte for byte. Properties over generated bodies.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { withModel } from '../../src/proxy/model-body.js';
import { pathHints, withPathModel } from '../../src/proxy/path-model.js';
import { mergeModelLists } from '../../src/proxy/models-union.js';
import type { Upstream } from '../../src/config/load.js';

const buf = (s: string) => Buffer.from(s, 'utf8');

describe('withModel', () => {
  it.each([
    ['spacing kept', '{ "model" :  "gpt-4o" , "n":1}', '{ "model" :  "openai/gpt-4o" , "n":1}'],
    ['a nested model untouched', '{"x":{"model":"a"},"model":"gpt-4o"}', '{"x":{"model":"a"},"model":"openai/gpt-4o"}'],
    ['an escaped name is the same field', '{"mod\\u0065l":"gpt-4o"}', '{"mod\\u0065l":"openai/gpt-4o"}'],
    ['every occurrence of a repeated name', '{"model":"a","model":"b"}', '{"model":"openai/gpt-4o","model":"openai/gpt-4o"}'],
    ['a non-string model replaced', '{"model":null}', '{"model":"openai/gpt-4o"}'],
  ])('%s', (_n, body, want) => {
    expect(withModel(buf(body), 'openai/gpt-4o')?.toString('utf8')).toBe(want);
  });

  it('leaves bodies it cannot read, and bodies without a model, alone', () => {
    expect(withModel(buf('{"messages":[]}'), 'x')).toBeUndefined();
    expect(withModel(buf('{oops'), 'x')).toBeUndefined();
    expect(withModel(buf('[{"model":"a"}]'), 'x')).toBeUndefined();
    expect(withModel(undefined, 'x')).toBeUndefined();
  });

  it('property: the result parses to the original with only model changed', () => {
    const value = fc.jsonValue({ maxDepth: 3 });
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), value, { maxKeys: 6 }), fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), (rest, original, next) => {
        const doc = { ...rest, model: original };
        const out = withModel(buf(JSON.stringify(doc)), next);
        expect(out).toBeDefined();
        const parsed = JSON.parse(out!.toString('utf8')) as Record<string, unknown>;
        expect(parsed).toEqual({ ...JSON.parse(JSON.stringify(doc)), model: next });
      }),
      { numRuns: 300 },
    );
  });

  it('property: bytes outside the model value are the original bytes', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 }), fc.constantFrom('', ' ', '\n\t'), (before, after, ws) => {
        const head = `{${ws}"a"${ws}:${ws}${JSON.stringify(before)}${ws},${ws}"model"${ws}:${ws}`;
        const tail = `${ws},${ws}"b":${JSON.stringify(after)}${ws}}`;
        const out = withModel(buf(`${head}"m"${tail}`), 'new')!.toString('utf8');
        expect(out).toBe(`${head}"new"${tail}`);
      }),
      { numRuns: 200 },
    );
  });
});

describe('withPathModel', () => {
  it('rewrites the model of a Gemini path and an Azure deployment, nothing else', () => {
    expect(withPathModel('gemini', '/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse', 'gemini-2.5-flash')).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
    expect(withPathModel('azure', '/openai/deployments/gpt4o-east/chat/completions?api-version=2024-10-21', 'gpt4o-west')).toBe('/openai/deployments/gpt4o-west/chat/completions?api-version=2024-10-21');
    expect(withPathModel('openai', '/v1/chat/completions', 'x')).toBe('/v1/chat/completions');
    expect(withPathModel('gemini', '/v1beta/models', 'x')).toBe('/v1beta/models');
  });

  it('property: what pathHints reads back is the new model, percent-encoded as needed', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9.-]{1,20}$/), fc.string({ minLength: 1, maxLength: 20 }), (old, next) => {
        const path = withPathModel('gemini', `/v1beta/models/${old}:generateContent`, next);
        expect(pathHints('gemini', path).model).toBe(next);
        expect(path.endsWith(':generateContent')).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe('mergeModelLists', () => {
  const member = (models?: RegExp[]) => ({ models }) as unknown as Upstream;
  it('unions the lists, each member kept to the models it serves, no id twice, cursors dropped', () => {
    const a = JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o' }, { id: 'claude-x' }] });
    const b = JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o' }, { id: 'llama' }] });
    const merged = JSON.parse(mergeModelLists('openai', [{ member: member([/^gpt-/]), body: a }, { member: member(), body: b }])!);
    expect(merged).toEqual({ object: 'list', data: [{ id: 'gpt-4o' }, { id: 'llama' }] });
    const anth = JSON.stringify({ data: [{ id: 'claude-1' }], has_more: true, first_id: 'claude-1', last_id: 'claude-1' });
    const m2 = JSON.parse(mergeModelLists('anthropic', [{ member: member(), body: anth }, { member: member(), body: JSON.stringify({ data: [{ id: 'claude-2' }], has_more: false }) }])!);
    expect(m2).toEqual({ data: [{ id: 'claude-1' }, { id: 'claude-2' }], has_more: false, first_id: 'claude-1', last_id: 'claude-2' });
    const gem = JSON.parse(mergeModelLists('gemini', [{ member: member([/^gemini-2/]), body: JSON.stringify({ models: [{ name: 'models/gemini-2.5-pro' }, { name: 'models/gemini-1.5' }], nextPageToken: 't' }) }])!);
    expect(gem).toEqual({ models: [{ name: 'models/gemini-2.5-pro' }] });
  });
  it('a member answering something else is left out; none readable is undefined', () => {
    expect(mergeModelLists('openai', [{ member: member(), body: '<html>' }])).toBeUndefined();
    expect(JSON.parse(mergeModelLists('openai', [{ member: member(), body: 'null' }, { member: member(), body: '{"data":[{"id":"x"},7,{"id":3}]}' }])!)).toEqual({ data: [{ id: 'x' }] });
  });
});
