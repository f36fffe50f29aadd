import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_MODEL_CHARS, MAX_TOKENS, PARSE_LIMIT_BYTES, requestInfo } from '../../src/proxy/request-info.js';
import { MAX_NESTING, MAX_TOP_LEVEL_FIELDS } from '../../src/proxy/top-level-json.js';

const json = (o: unknown) => Buffer.from(JSON.stringify(o));
const JSON_TYPE = 'application/json';

describe('requestInfo', () => {
  it.each([
    ['a chat request', json({ model: 'gpt-4o', max_tokens: 100, stream: true, user: 'u1' }), { model: 'gpt-4o', stream: true, session: 'u1' }],
    ['no model', json({ messages: [] }), { model: '', stream: false, session: undefined }],
    ['an absurd max_tokens (clamped in tokens below)', json({ model: 'm', max_tokens: 1e20 }), { model: 'm', stream: false, session: undefined }],
    ['a model name longer than any real one', json({ model: 'm'.repeat(MAX_MODEL_CHARS + 1) }), { model: '', stream: false, session: undefined }],
    ['a model name at the limit', json({ model: 'm'.repeat(MAX_MODEL_CHARS) }), { model: 'm'.repeat(MAX_MODEL_CHARS), stream: false, session: undefined }],
    ['not JSON', Buffer.from('{oops'), { model: '', stream: false, session: undefined }],
    ['a JSON array', json([1, 2]), { model: '', stream: false, session: undefined }],
  ])('%s', (_name, body, want) => {
    const info = requestInfo(body, JSON_TYPE, ['prompt_cache_key', 'user']);
    expect({ model: info.demand.model, stream: info.stream, session: info.sessionFromBody }).toEqual(want);
  });

  it('estimates tokens as max output + body bytes / 4', () => {
    const body = json({ model: 'gpt-4o', max_completion_tokens: 50, max_tokens: 999 });
    expect(requestInfo(body, JSON_TYPE, []).demand.tokens).toBe(50 + Math.ceil(body.length / 4));
  });

  it('does not parse bodies past the limit or of another content type', () => {
    expect(requestInfo(Buffer.alloc(PARSE_LIMIT_BYTES + 1, 0x20), JSON_TYPE, []).demand.model).toBe('');
    expect(requestInfo(json({ model: 'gpt-4o' }), 'text/plain', []).demand.model).toBe('');
  });

  it('an absurd max_tokens counts as MAX_TOKENS, a whole number', () => {
    expect(requestInfo(json({ model: 'm', max_tokens: 1e20 }), JSON_TYPE, []).demand.tokens).toBe(MAX_TOKENS);
    expect(Number.isInteger(requestInfo(json({ model: 'm', max_tokens: 10.5 }), JSON_TYPE, []).demand.tokens)).toBe(true);
  });
});

/** The reading before the scanner: JSON.parse of the whole body. The scanner must agree with it. */
function parsedInfo(body: Buffer, stickyFields: readonly string[]) {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return requestInfo(undefined, JSON_TYPE, stickyFields);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return requestInfo(undefined, JSON_TYPE, stickyFields);
  const o = parsed as Record<string, unknown>;
  const model = typeof o.model === 'string' && o.model.length <= MAX_MODEL_CHARS ? o.model : '';
  let maxOut = 0;
  for (const v of [o.max_completion_tokens, o.max_tokens, o.max_output_tokens]) {
    if (typeof v === 'number' && Number.isFinite(v) && v > 0) {
      maxOut = v;
      break;
    }
  }
  const tokens = Math.min(MAX_TOKENS, Math.ceil(maxOut) + Math.ceil(body.length / 4));
  let sessionFromBody: string | undefined;
  for (const f of stickyFields) {
    const v = o[f];
    if (typeof v === 'string' && v !== '') {
      sessionFromBody = v;
      break;
    }
  }
  return { demand: { model, tokens }, stream: o.stream === true, sessionFromBody };
}

/** A tiny deterministic generator, so one fast-check seed decides whitespace and escapes. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** JSON text with random whitespace and random `\uXXXX` / short escapes: what a hand-written client might send. */
function serialize(v: unknown, rnd: () => number): string {
  const ws = () => [' ', '\n', '\t', '\r', '', '', ''][Math.floor(rnd() * 7)]!;
  const str = (s: string) => {
    let out = '"';
    for (const ch of s) {
      const code = ch.codePointAt(0)!;
      if (ch === '"' || ch === '\\' || code < 0x20 || (rnd() < 0.15 && code < 0x10000)) {
        const hex = code.toString(16).padStart(4, '0');
        out += `\\u${rnd() < 0.5 ? hex : hex.toUpperCase()}`;
      }
      else if (ch === '/' && rnd() < 0.5) out += '\\/';
      else out += ch;
    }
    return `${out}"`;
  };
  if (v instanceof Entries) return `{${ws()}${v.pairs.map(([k, x]) => `${ws()}${str(k)}${ws()}:${ws()}${serialize(x, rnd)}${ws()}`).join(',')}}`;
  if (Array.isArray(v)) return `[${ws()}${v.map((x) => `${ws()}${serialize(x, rnd)}${ws()}`).join(',')}]`;
  if (typeof v === 'string') return str(v);
  if (v !== null && typeof v === 'object') return serialize(new Entries(Object.entries(v)), rnd);
  return JSON.stringify(v) ?? 'null';
}
/** An object as a list of pairs, so a name may repeat (JSON.parse keeps the last). */
class Entries {
  constructor(readonly pairs: [string, unknown][]) {}
}

const STICKY = ['prompt_cache_key', 'user'];
const FIELD_NAMES = ['model', 'stream', 'max_tokens', 'max_completion_tokens', 'max_output_tokens', ...STICKY];
const nested = (depth: number, inner: unknown): unknown => {
  let v = inner;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { k: v };
  return v;
};
/** Strings long enough to cross the scanner's byte-walk and native-jump stretches, dense in quotes and backslashes. */
const escapeHeavy = fc
  .array(fc.constantFrom('a', 'a', 'a', '"', '\\', '\u00e9', '\n', '/'), { maxLength: 700 })
  .map((chars) => chars.join(''));
const fieldValue = fc.oneof(
  escapeHeavy,
  fc.constantFrom('gpt-4o', 'claude-3-5-sonnet', '', 'x'.repeat(MAX_MODEL_CHARS + 1)),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.integer({ min: -10, max: 100_000 }),
  fc.double(),
  fc.constantFrom(1e20, 1e400, -0, 0.5, 1e-7),
  fc.boolean(),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 3 }),
);
const junk = fc.oneof(
  escapeHeavy,
  fc.array(escapeHeavy, { maxLength: 4 }),
  fc.jsonValue({ maxDepth: 4 }),
  // Up to MAX_NESTING deep in all (the innermost `{}` is one level): deeper ones are given up, tested below.
  fc.tuple(fc.integer({ min: 1, max: MAX_NESTING - 1 }), fc.oneof(fc.integer(), fc.string(), fc.constant({}))).map(([d, v]) => nested(d, v)),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('"\\', '\\\\\\"', '{"model":"inner"}', '[]{}', '\u0000'),
);
const name = fc.oneof(fc.constantFrom(...FIELD_NAMES, '__proto__', 'constructor', 'modell', 'Model'), fc.string({ unit: 'binary', maxLength: 8 }));
const document = fc
  .array(fc.oneof(fc.tuple(fc.constantFrom(...FIELD_NAMES), fieldValue), fc.tuple(name, junk)), { maxLength: 12 })
  .map((pairs) => new Entries(pairs as [string, unknown][]));

describe('the bounded scan agrees with JSON.parse', () => {
  it('on well-formed objects with the fields, repeated names, escapes, whitespace and nested junk', () => {
    fc.assert(
      fc.property(document, fc.integer(), fc.constantFrom(STICKY, [], ['user'], ['__proto__', 'constructor', 'user']), (doc, seed, sticky) => {
        const body = Buffer.from(serialize(doc, prng(seed)));
        expect(requestInfo(body, JSON_TYPE, sticky)).toEqual(parsedInfo(body, sticky));
      }),
      { numRuns: 3000 },
    );
  });

  it('on any mutation of such a body that JSON.parse still accepts, and never throws on the others', () => {
    fc.assert(
      fc.property(document, fc.integer(), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete'), (doc, seed, at, byte, op) => {
        const text = Buffer.from(serialize(doc, prng(seed)));
        const i = text.length === 0 ? 0 : at % text.length;
        const body =
          op === 'set'
            ? Buffer.concat([text.subarray(0, i), Buffer.from([byte]), text.subarray(i + 1)])
            : op === 'insert'
              ? Buffer.concat([text.subarray(0, i), Buffer.from([byte]), text.subarray(i)])
              : Buffer.concat([text.subarray(0, i), text.subarray(i + 1)]);
        const got = requestInfo(body, JSON_TYPE, STICKY);
        let wellFormed = true;
        try {
          JSON.parse(body.toString('utf8'));
        } catch {
          wellFormed = false;
        }
        if (wellFormed) expect(got).toEqual(parsedInfo(body, STICKY));
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const info = requestInfo(Buffer.from(bytes), JSON_TYPE, STICKY);
        expect(info.demand.tokens).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        requestInfo(Buffer.from(`{"model":"m",${text}`), JSON_TYPE, STICKY);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('bounds', () => {
  it(`reads past values nested ${MAX_NESTING} deep, gives up on deeper ones`, () => {
    const at = (depth: number) => Buffer.from(`{"x":${'['.repeat(depth)}${']'.repeat(depth)},"model":"gpt-4o"}`);
    expect(requestInfo(at(MAX_NESTING), JSON_TYPE, []).demand.model).toBe('gpt-4o');
    expect(requestInfo(at(MAX_NESTING + 1), JSON_TYPE, []).demand.model).toBe('');
    // The issue's hostile body: 2,000,000 deep, read as "any model" after MAX_NESTING bytes.
    const deep = Buffer.from(`{"model":"gpt-4o","x":${'['.repeat(2_000_000)}${']'.repeat(2_000_000)}}`);
    expect(requestInfo(deep, JSON_TYPE, []).demand.model).toBe('');
  });

  it(`reads ${MAX_TOP_LEVEL_FIELDS} top-level fields, gives up past them`, () => {
    const wide = (n: number) => Buffer.from(`{${Array.from({ length: n - 1 }, (_, i) => `"f${i}":0,`).join('')}"model":"gpt-4o"}`);
    expect(requestInfo(wide(MAX_TOP_LEVEL_FIELDS), JSON_TYPE, []).demand.model).toBe('gpt-4o');
    expect(requestInfo(wide(MAX_TOP_LEVEL_FIELDS + 1), JSON_TYPE, []).demand.model).toBe('');
  });

  it('reads names and values written with escapes, strings with escaped quotes before them', () => {
    const body = Buffer.from('{"a":"x\\"y\\\\","mo\\u0064el":"gpt\\u002d4o","\\u0075ser":"u\\"1","stream":true}');
    expect(requestInfo(body, JSON_TYPE, ['user'])).toMatchObject({ demand: { model: 'gpt-4o' }, stream: true, sessionFromBody: 'u"1' });
  });

  it.each([1, 30, 31, 32, 33, 255, 256, 257, 300, 1000])('finds the end of a string with an escaped quote at byte %i', (at) => {
    for (const tail of [0, 1, 40, 300]) {
      const content = `${'a'.repeat(at)}\\"${'b'.repeat(tail)}\\\\`;
      const body = Buffer.from(`{"x":"${content}","y":["${content}"],"model":"gpt-4o","user":"${content}"}`);
      expect(requestInfo(body, JSON_TYPE, ['user'])).toEqual(parsedInfo(body, ['user']));
      expect(requestInfo(body, JSON_TYPE, ['user']).demand.model).toBe('gpt-4o');
    }
  });

  it('the last of repeated names counts, as with JSON.parse', () => {
    const body = Buffer.from('{"model":"a","model":{"x":1},"stream":true,"stream":false,"model":"b"}');
    expect(requestInfo(body, JSON_TYPE, [])).toMatchObject({ demand: { model: 'b' }, stream: false });
  });

  it.each([
    ['truncated', '{"model":"gpt-4o","messages":[{"role":"user"'],
    ['trailing garbage', '{"model":"gpt-4o"} x'],
    ['a bad value of a field it reads', '{"model":"gpt-4o","max_tokens":01}'],
    ['a raw newline in the model', '{"model":"gpt\n4o"}'],
    ['a missing colon', '{"model" "gpt-4o"}'],
    ['a trailing comma', '{"model":"gpt-4o",}'],
    ['a byte-order mark', '\ufeff{"model":"gpt-4o"}'],
  ])('reads nothing from a body malformed where it reads: %s', (_name, text) => {
    expect(requestInfo(Buffer.from(text), JSON_TYPE, []).demand.model).toBe('');
  });
});
