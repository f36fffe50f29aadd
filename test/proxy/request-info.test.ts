import { describe, expect, it } from 'vitest';
import { MAX_MODEL_CHARS, MAX_TOKENS, PARSE_LIMIT_BYTES, requestInfo } from '../../src/proxy/request-info.js';

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
