// Request hygiene rules, without HTTP: methods, header counts, target forms, dot segments in every encoding.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ALLOW_HEADER,
  MAX_DECODE_ROUNDS,
  MAX_REQUEST_HEADERS,
  decodedView,
  headerCountError,
  methodError,
  resolveTarget,
  vetRequest,
} from '../../src/proxy/request-target.js';

const V1 = { prefix: '/v1', basePath: '/v1' };
const HOST = '127.0.0.1:8787';
const resolve = (url: string, upstream = V1, method = 'POST') => resolveTarget(method, url, upstream, HOST);
const pathOf = (url: string, upstream = V1) => {
  const r = resolve(url, upstream);
  return r.ok ? r.path : r.error.code;
};

describe('methods', () => {
  it.each(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])('%s is forwarded', (m) => {
    expect(methodError(m)).toBeUndefined();
    expect(resolve('/v1/models', V1, m).ok).toBe(true);
  });

  it.each(['TRACE', 'CONNECT', 'PROPFIND', 'QUERY', 'MKCOL', 'get', 'PURGE', ''])('%s gets 405 with Allow', (m) => {
    const e = methodError(m)!;
    expect(e.status).toBe(405);
    expect(e.code).toBe('keypool_method_not_allowed');
    expect(e.headers).toEqual({ allow: ALLOW_HEADER });
    expect(ALLOW_HEADER).toBe('GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
    const r = resolve('/v1/models', V1, m);
    expect(r.ok ? r.path : r.error.status).toBe(405);
  });

  it('never echoes a method that is not a token', () => {
    expect(methodError('GET\r\nx-evil: 1')!.message).not.toContain('x-evil');
  });
});

describe('header count', () => {
  it(`allows ${MAX_REQUEST_HEADERS} fields and refuses one more with 431`, () => {
    expect(headerCountError(MAX_REQUEST_HEADERS)).toBeUndefined();
    const e = headerCountError(MAX_REQUEST_HEADERS + 1)!;
    expect([e.status, e.code]).toEqual([431, 'keypool_headers_too_large']);
    expect(vetRequest('GET', '/v1/models', MAX_REQUEST_HEADERS + 1, HOST)?.status).toBe(431);
    expect(vetRequest('GET', '/v1/models', 3, HOST)).toBeUndefined();
  });
});

describe('mapping to the upstream path', () => {
  it.each([
    ['/v1', '/v1', '/v1/chat/completions?x=1&y=%20', '/v1/chat/completions?x=1&y=%20'],
    ['/v1', '/v1', '/v1', '/v1'],
    ['/v1', '/v1', '/v1?a=b', '/v1?a=b'],
    ['/openai', '/v1', '/openai/models', '/v1/models'],
    ['/v1', '', '/v1/models', '/models'],
    ['/v1', '', '/v1', '/'],
    ['/v1', '', '/v1?a', '/?a'],
    ['/', '/v1', '/models', '/v1/models'],
    ['/', '/v1', '/', '/v1/'],
    ['/', '', '/models', '/models'],
  ])('prefix %s base %s: %s -> %s', (prefix, basePath, url, expected) => {
    expect(pathOf(url, { prefix, basePath })).toBe(expected);
  });

  it.each([
    // Other bytes are never decoded or re-encoded: the upstream sees the client's exact bytes.
    '/v1/models/meta-llama%2FLlama-3-8b',
    '/v1/files/a%20b%25c',
    '/v1/x/.hidden/..x/x../...x',
    '/v1/chat/completions;v=1',
    '/v1//chat/completions',
    '/v1/a%2',
    '/v1/a%zz',
  ])('keeps %s byte for byte', (url) => {
    expect(pathOf(url)).toBe(url);
  });

  it('keeps the query byte for byte, dots and all', () => {
    expect(pathOf('/v1/files?path=../../etc&x=%2e%2e%2f&y=a+b#c')).toBe('/v1/files?path=../../etc&x=%2e%2e%2f&y=a+b#c');
  });
});

describe('dot segments are refused in every encoding', () => {
  it.each([
    '/v1/..',
    '/v1/../admin',
    '/v1/.',
    '/v1/./models',
    '/v1/chat/completions/../../..',
    '/v1/%2e%2e/%2e%2e/etc/passwd',
    '/v1/%2E%2E/admin',
    '/v1/%2e%2E/admin',
    '/v1/.%2e/admin',
    '/v1/%2e./admin',
    '/v1/%2e',
    '/v1/x%2f..%2fadmin',
    '/v1/x%2F..%2Fadmin',
    '/v1/x%2f%2e%2e',
    '/v1/x\\..\\admin',
    '/v1/x%5c..%5cadmin',
    '/v1/x%5C..',
    '/v1/%252e%252e/admin',
    '/v1/%25252e%25252e/admin',
    '/v1/%u002e%u002e/admin',
    '/v1/%c0%ae%c0%ae/admin',
    '/v1/%e0%80%ae%e0%80%ae/admin',
    '/v1/x%c0%af..',
    '/v1/%ef%bc%8e%ef%bc%8e/admin',
    '/v1/..;/admin',
    '/v1/..;x=y/admin',
    '/v1/..%3b/admin',
    '/v1/..%3f/x',
    '/v1/..%00/admin',
    '/v1/..%20/admin',
    '/v1/.../admin',
    '/v1/x/..',
  ])('%s -> 400', (url) => {
    const r = resolve(url);
    expect(r.ok).toBe(false);
    if (!r.ok) expect([r.error.status, r.error.code]).toEqual([400, 'keypool_invalid_path']);
  });

  it(`refuses a path still encoded after ${MAX_DECODE_ROUNDS} decodings`, () => {
    let layered = '%2e';
    for (let i = 1; i < MAX_DECODE_ROUNDS; i++) layered = layered.replace('%', '%25');
    expect(decodedView(layered)).toBe('.');
    expect(decodedView(layered.replace('%', '%25'))).toBeUndefined();
    expect(pathOf(`/v1/${layered.replace('%', '%25')}x`)).toBe('keypool_invalid_path');
  });

  it('refuses a network-path reference when baseUrl has no path', () => {
    const bare = { prefix: '/', basePath: '' };
    expect(pathOf('//evil.example/x', bare)).toBe('keypool_invalid_path');
    expect(pathOf('/\\evil.example/x', bare)).toBe('keypool_invalid_path');
    expect(pathOf('/%2fevil.example/x', bare)).toBe('keypool_invalid_path');
    expect(pathOf('//x', { prefix: '/', basePath: '/v1' })).toBe('/v1//x');
  });
});

describe('prefix and characters', () => {
  it.each([
    ['a percent-encoded prefix (the router decodes it)', '/%76%31/models'],
    ['a prefix as a segment prefix', '/v1x/models'],
    ['a fragment', '/v1/models#x'],
    ['a space', '/v1/a b'],
    ['raw non-ASCII', '/v1/\u00e9'],
    ['a control character', '/v1/a\u0001'],
  ])('refuses %s', (_name, url) => {
    expect(pathOf(url)).toBe('keypool_invalid_path');
  });
});

describe('target forms', () => {
  it('maps absolute-form naming keypool itself to its path', () => {
    expect(pathOf(`http://${HOST}/v1/chat/completions?x=1`)).toBe('/v1/chat/completions?x=1');
    expect(pathOf(`HTTPS://${HOST.toUpperCase()}/v1/models`)).toBe('/v1/models');
    expect(pathOf(`http://${HOST}`, { prefix: '/', basePath: '/v1' })).toBe('/v1/');
    expect(pathOf(`http://${HOST}?a`, { prefix: '/', basePath: '/v1' })).toBe('/v1/?a');
  });

  it.each([
    ['another host', 'http://evil.example/v1/chat/completions', HOST],
    ['userinfo', `http://user@${HOST}/v1/models`, HOST],
    ['no Host header', `http://${HOST}/v1/models`, undefined],
    ['another scheme', `ftp://${HOST}/v1/models`, HOST],
    ['asterisk-form', '*', HOST],
    ['a bare word', 'v1/models', HOST],
    ['authority-form', `${HOST}`, HOST],
    ['absolute-form with dot segments', `http://${HOST}/v1/../admin`, HOST],
  ])('refuses %s with 400', (_name, url, host) => {
    const r = resolveTarget('POST', url, V1, host);
    expect(r.ok ? r.path : r.error.code).toBe('keypool_invalid_path');
  });

  it('vetRequest refuses the forms every route refuses', () => {
    expect(vetRequest('OPTIONS', '*', 2, HOST)?.code).toBe('keypool_invalid_path');
    expect(vetRequest('GET', 'http://evil.example/v1/models', 2, HOST)?.code).toBe('keypool_invalid_path');
    expect(vetRequest('GET', `http://${HOST}/v1/models`, 2, HOST)).toBeUndefined();
  });
});

/** An independent oracle: the path as the most liberal decoder would see it, split on both slashes. */
function oracleSegments(path: string): string[] {
  let s = path;
  for (let i = 0; i < MAX_DECODE_ROUNDS + 1; i++) {
    try {
      s = decodeURIComponent(s);
    } catch {
      break;
    }
  }
  return s.split(/[/\\]/);
}

const pathChar = fc.constantFrom('a', 'Z', '0', '.', '/', '\\', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', 'C', ';', '?', '#', '-', '~', ' ', 'u', '0');
const pathish = fc.array(fc.oneof(pathChar, fc.constantFrom('%2e', '%2E', '%2f', '%2F', '%5c', '%25', '..', './', '/..', '/.')), { maxLength: 30 }).map((a) => a.join(''));
const upstreams = fc.constantFrom(V1, { prefix: '/', basePath: '/v1' }, { prefix: '/', basePath: '' }, { prefix: '/openai', basePath: '/api/v2' }, { prefix: '/v1', basePath: '' });

describe('properties', () => {
  it('a resolved path starts with the base path, and no segment is a dot segment after decoding', () => {
    fc.assert(
      fc.property(upstreams, pathish, (u, tail) => {
        const url = `${u.prefix === '/' ? '' : u.prefix}/${tail}`;
        const r = resolve(url, u);
        if (!r.ok) return;
        const q = r.path.indexOf('?');
        const path = q === -1 ? r.path : r.path.slice(0, q);
        expect(path === (u.basePath || '/') || path.startsWith(`${u.basePath}/`)).toBe(true);
        for (const seg of oracleSegments(path)) expect(['.', '..']).not.toContain(seg);
        // What was forwarded is what the client sent after the prefix.
        expect(r.path.endsWith(url.slice(u.prefix === '/' ? 0 : u.prefix.length))).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws, whatever the target, method or host', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ maxLength: 10 }), fc.option(fc.string({ maxLength: 20 })), upstreams, (url, method, host, u) => {
        const r = resolveTarget(method, url, u, host ?? undefined);
        expect(typeof r.ok).toBe('boolean');
        vetRequest(method, url, 1, host ?? undefined);
      }),
      { numRuns: 2000 },
    );
  });
});
