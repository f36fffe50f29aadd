// The pure parts of the WebSocket path, table-driven and with fast-check: the upgrade check, the
// subprotocol parser and its credential filter, handshake headers, the model in a Realtime URL, close
// code mapping, close-reason scrubbing, the refusal head (no header injection), usage from final events.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { closeForOther, isSendableCode, MAX_CLOSE_REASON_BYTES, scrubReason } from '../../src/proxy/websocket-close.js';
import { formatHead } from '../../src/proxy/websocket-refuse.js';
import { handshakeLines } from '../../src/proxy/websocket-response.js';
import { checkUpgrade, isCredentialProtocol, MAX_SUBPROTOCOLS, parseSubprotocols, queryModel, upstreamHandshakeHeaders, upstreamSubprotocols } from '../../src/proxy/websocket-request.js';
import { SessionUsage } from '../../src/proxy/websocket-usage.js';

const GOOD = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };
const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".split('');
const token = fc.array(fc.constantFrom(...TOKEN_CHARS), { minLength: 1, maxLength: 20 }).map((a) => a.join(''));

describe('checkUpgrade', () => {
  it.each([
    ['a good handshake', 'GET', GOOD, 'websocket'],
    ['Upgrade in another case', 'GET', { ...GOOD, upgrade: 'WebSocket' }, 'websocket'],
    ['h2c', 'GET', { ...GOOD, upgrade: 'h2c' }, 400],
    ['no Upgrade', 'GET', { ...GOOD, upgrade: undefined }, 400],
    ['a list of protocols', 'GET', { ...GOOD, upgrade: 'websocket, h2c' }, 400],
    ['POST', 'POST', GOOD, 400],
    ['no key', 'GET', { ...GOOD, 'sec-websocket-key': undefined }, 400],
    ['a key of the wrong length', 'GET', { ...GOOD, 'sec-websocket-key': 'dGhlIHNhbXBsZQ==' }, 400],
    ['version 8', 'GET', { ...GOOD, 'sec-websocket-version': '8' }, 426],
    ['no version', 'GET', { ...GOOD, 'sec-websocket-version': undefined }, 426],
    ['bad subprotocols', 'GET', { ...GOOD, 'sec-websocket-protocol': 'a b' }, 400],
  ])('%s', (_name, method, headers, expected) => {
    const r = checkUpgrade(method, headers);
    expect(r.kind === 'refuse' ? r.status : r.kind).toBe(expected);
  });
});

describe('parseSubprotocols', () => {
  it.each([
    [undefined, []],
    ['realtime', ['realtime']],
    [' realtime ,\topenai-beta.realtime-v1 ', ['realtime', 'openai-beta.realtime-v1']],
    ['', undefined],
    ['a,,b', undefined],
    ['a,a', undefined],
    ['a b', undefined],
    ['a;b', undefined],
    ['é', undefined],
  ])('%j -> %j', (value, expected) => {
    expect(parseSubprotocols(value)).toEqual(expected);
  });

  it('reads back any list of distinct tokens, whatever the spacing, and rejects more than the cap', () => {
    fc.assert(
      fc.property(fc.uniqueArray(token, { minLength: 1, maxLength: MAX_SUBPROTOCOLS }), fc.array(fc.constantFrom('', ' ', '\t', '  '), { minLength: 2, maxLength: 2 }), (list, [a, b]) => {
        expect(parseSubprotocols(list.map((p) => `${a}${p}${b}`).join(','))).toEqual(list);
      }),
    );
    expect(parseSubprotocols(Array.from({ length: MAX_SUBPROTOCOLS + 1 }, (_, i) => `p${i}`).join(','))).toBeUndefined();
  });

  it('never accepts text a token cannot be, and never throws', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        const r = parseSubprotocols(s);
        if (r !== undefined) for (const p of r) expect(p).toMatch(/^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/);
      }),
    );
  });
});

describe('credential subprotocols', () => {
  it('leaves out the key, organisation and project, in any case, and keeps the rest in order', () => {
    expect(upstreamSubprotocols(['realtime', 'openai-insecure-api-key.sk-x', 'OpenAI-Insecure-API-Key.sk-y', 'openai-organization.org-1', 'openai-project.proj-1', 'openai-beta.realtime-v1'])).toEqual([
      'realtime',
      'openai-beta.realtime-v1',
    ]);
    fc.assert(
      fc.property(token, (t) => {
        expect(isCredentialProtocol(`openai-insecure-api-key.${t}`)).toBe(true);
        expect(upstreamSubprotocols([`openai-insecure-api-key.${t}`])).toEqual([]);
      }),
    );
  });
});

describe('upstreamHandshakeHeaders', () => {
  it('drops the client credential, hop-by-hop headers and every Sec-WebSocket-* header; keeps the rest', () => {
    expect(
      upstreamHandshakeHeaders({
        host: 'localhost:8787',
        upgrade: 'websocket',
        connection: 'Upgrade',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-version': '13',
        'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits',
        'sec-websocket-protocol': 'realtime, openai-insecure-api-key.sk-client',
        authorization: 'Bearer client',
        'x-api-key': 'client',
        'api-key': 'client',
        'openai-organization': 'org-client',
        'x-keypool-key': 'spoof',
        'openai-beta': 'realtime=v1',
        origin: 'https://app.example',
        'user-agent': 'codex',
      }),
    ).toEqual({ 'openai-beta': 'realtime=v1', origin: 'https://app.example', 'user-agent': 'codex' });
  });
});

describe('queryModel', () => {
  it.each([
    ['/v1/realtime?model=gpt-realtime', 'gpt-realtime'],
    ['/v1/realtime?x=1&model=gpt-4o-realtime-preview%2D2024', 'gpt-4o-realtime-preview-2024'],
    ['/v1/realtime', ''],
    ['/v1/realtime?model=', ''],
    ['/v1/realtime?model=a%0Ab', ''],
    [`/v1/realtime?model=${'m'.repeat(300)}`, ''],
  ])('%s -> %j', (url, model) => {
    expect(queryModel(url)).toEqual({ model, repeated: false });
  });
  it('says when the query names its model more than once', () => {
    expect(queryModel('/v1/realtime?model=a&model=b')).toEqual({ model: 'a', repeated: true });
    expect(queryModel('/v1/realtime?model=a%0A&x=1&model=b')).toEqual({ model: '', repeated: true });
  });
  it('never throws and never returns control characters', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (q) => {
        expect(queryModel(`/v1/realtime?${q}`).model).not.toMatch(/[\x00-\x1f\x7f]/);
      }),
    );
  });
});

describe('close codes', () => {
  it.each([
    [1000, true],
    [1001, true],
    [1003, true],
    [1004, false],
    [1005, false],
    [1006, false],
    [1007, true],
    [1011, true],
    [1014, true],
    [1015, false],
    [2999, false],
    [3000, true],
    [4999, true],
    [5000, false],
    [999, false],
  ])('%i sendable: %s', (code, sendable) => {
    expect(isSendableCode(code)).toBe(sendable);
  });

  it('passes a sendable code with its reason, turns 1005 into an empty close and a drop into 1014 / 1001', () => {
    const r = Buffer.from('bye');
    expect(closeForOther('client', 4001, r)).toEqual({ code: 4001, reason: r });
    expect(closeForOther('upstream', 1005, Buffer.alloc(0))).toEqual({ code: undefined, reason: Buffer.alloc(0) });
    expect(closeForOther('upstream', 1006, Buffer.alloc(0)).code).toBe(1014);
    expect(closeForOther('client', 1006, Buffer.alloc(0)).code).toBe(1001);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70_000 }), fc.constantFrom<'client' | 'upstream'>('client', 'upstream'), fc.uint8Array({ maxLength: 200 }), (code, side, reason) => {
        const f = closeForOther(side, code, Buffer.from(reason));
        // Whatever arrives, what goes out is a frame ws (and RFC 6455) accepts.
        if (f.code !== undefined) expect(isSendableCode(f.code)).toBe(true);
        expect(f.reason.length).toBeLessThanOrEqual(MAX_CLOSE_REASON_BYTES);
      }),
    );
  });

  it('scrubs a reason and keeps it within 123 bytes, cut at a character', () => {
    const scrub = (t: string): string => t.replaceAll('sk-secret', '[a much longer redaction marker]');
    expect(scrubReason(Buffer.from('bad sk-secret'), scrub).toString()).toBe('bad [a much longer redaction marker]');
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.nat(4), (text, n) => {
        const raw = Buffer.from(`${text}${' sk-secret'.repeat(n)}`.slice(0, 60));
        if (raw.length > MAX_CLOSE_REASON_BYTES) return;
        const out = scrubReason(raw, scrub);
        expect(out.length).toBeLessThanOrEqual(MAX_CLOSE_REASON_BYTES);
        expect(out.toString('utf8')).not.toContain('sk-secret');
        expect(Buffer.from(out.toString('utf8')).equals(out)).toBe(true);
      }),
    );
  });
});

describe('formatHead', () => {
  it('writes one line per valid header and leaves out anything that could inject one', () => {
    const head = formatHead(429, { 'retry-after': '3', 'x-bad': 'a\r\nset-cookie: x=1', 'bad name': 'v', 'content-length': '999', 'x-list': ['a', 'b'] }, 10);
    expect(head).toBe('HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\nx-list: a\r\nx-list: b\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 10\r\nconnection: close\r\n\r\n');
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 30 })), fc.integer({ min: 0, max: 1000 }), (headers, status) => {
        const lines = formatHead(status, headers, 0).split('\r\n');
        // Status line, header lines, and the blank line ending the head: nothing else.
        expect(lines.at(-1)).toBe('');
        expect(lines.at(-2)).toBe('');
        expect(lines[0]).toMatch(/^HTTP\/1\.1 [2-5]\d\d /);
        for (const l of lines.slice(1, -2)) expect(l).toMatch(/^[!#$%&'*+\-.^_`|~0-9a-z]+: [\t\x20-\x7e\x80-\xff]*$/);
        expect(lines.filter((l) => l.startsWith('content-length: '))).toHaveLength(1);
      }),
    );
  });

  it("keeps the upstream's content type, once", () => {
    expect(formatHead(400, { 'content-type': 'text/html' }, 0)).toContain('\r\ncontent-type: text/html\r\n');
    expect(formatHead(400, { 'content-type': 'text/html' }, 0)).not.toContain('application/json');
  });
});

describe('handshakeLines', () => {
  it("relays the upstream's end-to-end headers, scrubbed, never its Sec-WebSocket-* or hop-by-hop ones", () => {
    const lines = handshakeLines(
      { 'x-request-id': 'req_1', 'sec-websocket-accept': 'x', 'sec-websocket-protocol': 'realtime', upgrade: 'websocket', connection: 'Upgrade', 'x-echo': 'sk-secret', 'x-keypool-key': 'spoof' },
      (t) => t.replace('sk-secret', '[redacted]'),
      { 'x-keypool-key': 'openai-1' },
    );
    expect(lines).toEqual(['x-request-id: req_1', 'x-echo: [redacted]', 'x-keypool-key: openai-1']);
  });
});

describe('SessionUsage', () => {
  it("sums the usage of each response's final event and ignores everything else", () => {
    const u = new SessionUsage();
    const done = (i: number, o: number, type = 'response.completed'): Buffer =>
      Buffer.from(JSON.stringify({ type, response: { output: [{ text: 'x'.repeat(20_000) }], usage: { input_tokens: i, output_tokens: o } } }));
    expect(u.read()).toBeUndefined();
    u.push(Buffer.from('{"type":"response.output_text.delta","delta":"\\"usage\\":{\\"input_tokens\\":99}"}'), false);
    u.push(done(5, 7), true);
    expect(u.read()).toBeUndefined();
    u.push(done(5, 7), false);
    u.push(done(3, 1, 'response.done'), false);
    expect(u.read()).toEqual({ input: 8, output: 8 });
  });
});
