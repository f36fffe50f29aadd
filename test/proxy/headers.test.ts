import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { clientResponseHeaderList, clientResponseHeaders, headerSafe, setKey, upstreamRequestHeaders } from '../../src/proxy/headers.js';

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop headers, Connection-listed names, client credentials and framing', () => {
    const out = upstreamRequestHeaders({
      host: 'localhost:8787',
      connection: 'keep-alive, x-private-hop',
      'keep-alive': 'timeout=5',
      'x-private-hop': '1',
      'transfer-encoding': 'chunked',
      'content-length': '12',
      te: 'trailers',
      upgrade: 'h2c',
      'proxy-authorization': 'Basic x',
      authorization: 'Bearer client-token',
      'x-api-key': 'client-key',
      'x-keypool-key': 'spoof',
      'content-type': 'application/json',
      'openai-organization': 'org-1',
      'openai-project': 'proj-1',
      'user-agent': 'OpenAI/JS 6',
    });
    // openai-organization is the pool key's business: a client's value could make OpenAI refuse every key.
    expect(out).toEqual({ 'content-type': 'application/json', 'user-agent': 'OpenAI/JS 6' });
  });
  it('injects the key as a bearer token or a bare header', () => {
    const h: Record<string, string> = { a: '1' };
    expect(setKey(h, 'authorization', 'sk-1')).toEqual({ a: '1', authorization: 'Bearer sk-1' });
    // The next attempt replaces the key, it does not add a second one.
    expect(setKey(h, 'authorization', 'sk-2')).toEqual({ a: '1', authorization: 'Bearer sk-2' });
    expect(setKey({}, 'x-api-key', 'sk-ant')).toEqual({ 'x-api-key': 'sk-ant' });
  });
});

describe('clientResponseHeaders', () => {
  it('drops hop-by-hop headers both ways and keeps the rest', () => {
    expect(
      clientResponseHeaders({
        connection: 'close, x-hop',
        'x-hop': 'y',
        'transfer-encoding': 'chunked',
        'keep-alive': 'timeout=5',
        'content-type': 'text/event-stream',
        'x-ratelimit-remaining-requests': '9',
        'set-cookie': ['a=1', 'b=2'],
      }),
    ).toEqual({ 'content-type': 'text/event-stream', 'x-ratelimit-remaining-requests': '9', 'set-cookie': ['a=1', 'b=2'] });
  });
});

describe('headerSafe', () => {
  it('any string becomes a value node accepts in a header; printable ASCII is kept as it is', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const v = headerSafe(s);
        expect(/^[\x20-\x7e]*$/.test(v)).toBe(true);
        if (/^[\x20-\x7e]*$/.test(s)) expect(v).toBe(s);
      }),
      { numRuns: 500 },
    );
    expect(headerSafe('gpt-4o\n')).toBe('gpt-4o%0A');
    expect(headerSafe('gpt-4o\u{1F600}')).toBe('gpt-4o%F0%9F%98%80');
    expect(headerSafe('a\ud800b')).toBe('a%EF%BF%BDb');
  });
});

describe('keypool’s own headers from an upstream', () => {
  it('are dropped from every answer the client gets, object or flat list; the rest is kept', () => {
    const up = { 'x-keypool-request-id': 'forged', 'x-keypool-attempts': ['9', '9'], 'x-keypool-key': 'victim', 'x-keypoolish': 'kept', 'content-type': 'application/json' };
    expect(clientResponseHeaders(up)).toEqual({ 'x-keypoolish': 'kept', 'content-type': 'application/json' });
    expect(clientResponseHeaderList(up)).toEqual(['x-keypoolish', 'kept', 'content-type', 'application/json']);
  });
});
