// The pretty log format: what each kind of line looks like, colour only when asked, and properties over
// any input (never throws, one line per JSON document unless an error's stack follows).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { painter, useColour } from '../../src/cli/colour.js';
import { formatLogLine, prettyDestination } from '../../src/cli/pretty-log.js';
import { createLogger } from '../../src/logger.js';

const plain = painter(false);
const T = new Date(2026, 11, 1, 9, 5, 7, 42).getTime();

describe('formatLogLine', () => {
  it('puts time, level and message first, then the fields', () => {
    const line = JSON.stringify({ level: 40, time: T, pid: 1, hostname: 'h', name: 'keypool', msg: 'key disabled', upstream: 'openai', key: 'openai-2', reason: 'unauthorized', until: '2026-12-02T09:05:07.042Z' });
    expect(formatLogLine(line, plain)).toBe('09:05:07.042 WARN  key disabled upstream=openai key=openai-2 reason=unauthorized until=2026-12-02T09:05:07.042Z');
  });

  it('writes the request line short: method, path, status, key, time, then the rest', () => {
    const line = JSON.stringify({ level: 30, time: T, msg: 'request', reqId: 'r1', method: 'POST', path: '/v1/chat/completions', upstream: 'openai', client: 'agent-a', model: 'gpt-4o', status: 429, attempts: 3, key: undefined, tried: ['openai-1:429:rotate', 'openai-2:429:rotate'], ms: 12.5 });
    expect(formatLogLine(line, plain)).toBe('09:05:07.042 INFO  POST /v1/chat/completions 429 12.5ms reqId=r1 upstream=openai client=agent-a model=gpt-4o attempts=3 tried=openai-1:429:rotate,openai-2:429:rotate');
  });

  it('quotes text with spaces, shows objects as JSON and an error by its message, its stack at error level', () => {
    const line = JSON.stringify({ level: 50, time: T, msg: 'request failed', note: 'two words', upstreams: [{ name: 'a' }], err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at x' } });
    expect(formatLogLine(line, plain)).toBe('09:05:07.042 ERROR request failed note="two words" upstreams=[{"name":"a"}] err=boom\n    Error: boom\n        at x');
  });

  it('paints the level and status only when colour is on', () => {
    const line = JSON.stringify({ level: 30, time: T, msg: 'request', method: 'GET', path: '/v1/models', status: 200, key: 'k', ms: 1 });
    expect(formatLogLine(line, painter(true))).toContain('\u001b[32mINFO \u001b[39m');
    expect(formatLogLine(line, painter(true))).toContain('\u001b[32m200\u001b[39m');
    expect(useColour(true, {})).toBe(true);
    expect(useColour(true, { NO_COLOR: '1' })).toBe(false);
    expect(useColour(false, {})).toBe(false);
  });

  it('passes a line that is not a JSON object through', () => {
    expect(formatLogLine('plain text\n', plain)).toBe('plain text');
    expect(formatLogLine('[1,2]', plain)).toBe('[1,2]');
  });

  it('never throws; a JSON object gives one line unless an error stack follows', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.jsonValue().map((v) => JSON.stringify(v))), (text) => {
        formatLogLine(text, plain);
      }),
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 10 }).filter((k) => k !== 'err'), fc.jsonValue({ maxDepth: 2 })), fc.option(fc.integer({ min: 10, max: 60 })), (fields, level) => {
        const out = formatLogLine(JSON.stringify({ ...fields, level: level ?? 30 }), plain);
        expect(out.includes('\n')).toBe(false);
      }),
    );
  });
});

describe('prettyDestination', () => {
  it('is a pino destination: redaction still applies, and flush works', () => {
    const lines: string[] = [];
    const logger = createLogger('info', prettyDestination(plain, (t) => lines.push(t)));
    logger.info({ headers: { authorization: 'Bearer sk-redact-me-000000001' } }, 'hello');
    let flushed = false;
    logger.flush(() => (flushed = true));
    expect(flushed).toBe(true);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  hello headers=\{"authorization":"\[redacted\]"\}\n$/);
  });
});
