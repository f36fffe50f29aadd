// The Gemini personality: generateContent, both stream forms, countTokens, models, the key from
// x-goog-api-key or ?key=, and the 429 that carries its wait only in the body (RetryInfo).
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { jsonArrayFrames } from '../../src/fake-upstream/gemini-bodies.js';
import { protoDuration } from '../../src/fake-upstream/gemini-errors.js';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream, FakeUpstreamOptions } from '../../src/fake-upstream/server.js';
import { call, sseEvents, streamedText } from './provider-calls.js';

const KEY = 'AIzaFakeSecret0123456789abcdefghij';
const TEXT = 'Hello from the fake upstream.';
const BODY = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] });
const BASE = '/v1beta/models/gemini-2.5-flash';

let opened: FakeUpstream[] = [];
afterEach(async () => {
  await Promise.all(opened.map((upstream) => upstream.close()));
  opened = [];
});
async function start(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream({ provider: 'gemini', ...options });
  opened.push(upstream);
  return upstream;
}
const post = (upstream: FakeUpstream, path: string, headers: Record<string, string> = {}) =>
  call(upstream, path, { headers: { 'content-type': 'application/json', ...headers }, body: BODY });

interface GoogleError {
  error: { code: number; message: string; status: string; details?: Record<string, unknown>[] };
}
const detail = (reply: { text: string }, type: string): Record<string, unknown> | undefined =>
  (JSON.parse(reply.text) as GoogleError).error.details?.find((d) => d['@type'] === `type.googleapis.com/google.rpc.${type}`);

describe('successes', () => {
  it('answers generateContent, streams (SSE with CRLF, or one JSON array), counts tokens and lists models', async () => {
    const upstream = await start({ acceptKeys: [KEY] });
    const plain = await post(upstream, `${BASE}:generateContent?key=${KEY}`);
    expect(plain.status).toBe(200);
    const body = JSON.parse(plain.text) as { candidates: { content: { parts: { text: string }[]; role: string }; finishReason: string }[]; usageMetadata: Record<string, number>; modelVersion: string };
    expect(body.candidates[0]).toMatchObject({ content: { parts: [{ text: TEXT }], role: 'model' }, finishReason: 'STOP' });
    expect(body.usageMetadata).toEqual({ promptTokenCount: 9, candidatesTokenCount: 6, totalTokenCount: 15 });
    expect(body.modelVersion).toBe('gemini-2.5-flash');

    const sse = await post(upstream, `${BASE}:streamGenerateContent?alt=sse`, { 'x-goog-api-key': KEY });
    expect(sse.headers['content-type']).toBe('text/event-stream');
    expect(sse.text.split('\r\n\r\n').filter((s) => s !== '')).toHaveLength(5);
    expect(streamedText('gemini', sse.text)).toBe(TEXT);

    const array = await post(upstream, `${BASE}:streamGenerateContent`, { 'x-goog-api-key': KEY });
    expect(array.headers['content-type']).toMatch(/^application\/json/);
    const chunks = JSON.parse(array.text) as { candidates: { finishReason?: string }[] }[];
    expect(chunks.map((c) => c.candidates[0]?.finishReason)).toEqual([undefined, undefined, undefined, undefined, 'STOP']);

    const counted = await post(upstream, `${BASE}:countTokens`, { 'x-goog-api-key': KEY });
    expect((JSON.parse(counted.text) as { totalTokens: number }).totalTokens).toBeGreaterThan(0);
    const models = JSON.parse((await call(upstream, '/v1beta/models', { headers: { 'x-goog-api-key': KEY } })).text) as { models: { name: string }[] };
    expect(models.models.map((m) => m.name)).toContain('models/gemini-2.5-flash');

    const unknown = await call(upstream, '/v1beta/nope', { headers: { 'x-goog-api-key': KEY } });
    expect([unknown.status, (JSON.parse(unknown.text) as GoogleError).error.status]).toEqual([404, 'NOT_FOUND']);
    expect(upstream.requests.map((r) => r.key)).toEqual(Array.from({ length: 6 }, () => KEY));
  });

  it('prefers x-goog-api-key over ?key=, and treats an empty one as missing', async () => {
    const upstream = await start({ acceptKeys: [KEY] });
    expect((await post(upstream, `${BASE}:generateContent?key=other`, { 'x-goog-api-key': KEY })).status).toBe(200);
    const empty = await post(upstream, `${BASE}:generateContent?key=`);
    expect([empty.status, (JSON.parse(empty.text) as GoogleError).error.status]).toEqual([403, 'PERMISSION_DENIED']);
  });
});

describe('429 RESOURCE_EXHAUSTED', () => {
  it('tells the wait in RetryInfo, names the per-minute quota, and sends no retry header', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'rate_limit', ms: 37_000 });
    const reply = await post(upstream, `${BASE}:generateContent?key=${KEY}`);
    expect(reply.status).toBe(429);
    expect(reply.headers['retry-after']).toBeUndefined();
    expect(detail(reply, 'RetryInfo')).toEqual({ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '37s' });
    const violations = detail(reply, 'QuotaFailure')?.['violations'] as { quotaId: string; quotaDimensions: { model: string } }[];
    expect(violations.map((v) => [v.quotaId, v.quotaDimensions.model])).toEqual([['GenerateRequestsPerMinutePerProjectPerModel-FreeTier', 'gemini-2.5-flash']]);
  });

  it('has a daily-quota variant whose short retryDelay does not lift it', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'resource_exhausted', daily: true, ms: 12_500 });
    const reply = await post(upstream, `/v1beta/models/gemini-2.5-pro:generateContent?key=${KEY}`);
    expect([reply.status, (JSON.parse(reply.text) as GoogleError).error.status]).toEqual([429, 'RESOURCE_EXHAUSTED']);
    const violations = detail(reply, 'QuotaFailure')?.['violations'] as { quotaId: string; quotaDimensions: { model: string } }[];
    expect(violations[0]).toMatchObject({ quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier', quotaDimensions: { model: 'gemini-2.5-pro' } });
    expect(detail(reply, 'RetryInfo')?.['retryDelay']).toBe('12.500s');
  });

  it('says API_KEY_INVALID for a bad key, in ErrorInfo', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'unauthorized' });
    const reply = await post(upstream, `${BASE}:generateContent?key=${KEY}`);
    expect([reply.status, detail(reply, 'ErrorInfo')?.['reason']]).toEqual([400, 'API_KEY_INVALID']);
  });

  it('sends an error object as the SSE event of a 200 stream', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'error_in_stream', after: 1 });
    const reply = await post(upstream, `${BASE}:streamGenerateContent?alt=sse&key=${KEY}`);
    const events = sseEvents(reply.text).map((e) => JSON.parse(e.data) as Partial<GoogleError>);
    expect([reply.status, events.length, events[1]?.error?.status]).toEqual([200, 2, 'UNAVAILABLE']);
  });
});

describe('pure pieces', () => {
  it('protoDuration never tells a shorter wait than asked, by less than a millisecond', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1e9, noNaN: true }), (ms) => {
        const text = protoDuration(ms);
        expect(text).toMatch(/^\d+(\.\d{3})?s$/);
        const told = Number(text.slice(0, -1)) * 1000;
        expect(told).toBeGreaterThanOrEqual(ms - 1e-6);
        expect(told - ms).toBeLessThan(1 + 1e-6);
      }),
    );
  });

  it('jsonArrayFrames concatenate to the JSON array of the values', () => {
    fc.assert(
      fc.property(fc.array(fc.jsonValue(), { maxLength: 8 }), (values) => {
        const text = Buffer.concat(jsonArrayFrames(values)).toString('utf8');
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(values)));
      }),
    );
  });
});
