// The fake upstream against real loopback clients: undici for exact bytes and headers, and the
// official openai client to prove the bodies are ones it accepts.
import OpenAI from 'openai';
import { request } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import { waitFor } from '../helpers/wait.js';
import type { Behavior, FakeUpstream, FakeUpstreamOptions } from '../../src/fake-upstream/server.js';

const KEY = 'sk-test-secret-0123456789abcdef';
const OTHER = 'sk-other-secret-fedcba9876543210';

let opened: FakeUpstream[] = [];

afterEach(async () => {
  await Promise.all(opened.map((upstream) => upstream.close()));
  opened = [];
});

async function start(options?: FakeUpstreamOptions): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream(options);
  opened.push(upstream);
  return upstream;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

interface CallOptions {
  method?: 'GET' | 'POST' | 'DELETE';
  key?: string | undefined;
  body?: string | Buffer;
  headers?: Record<string, string>;
}

async function call(upstream: FakeUpstream, path: string, options: CallOptions = {}): Promise<Reply> {
  const key = 'key' in options ? options.key : KEY;
  const headers: Record<string, string> = { ...options.headers };
  if (key !== undefined) headers['authorization'] = `Bearer ${key}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${upstream.url}${path}`, {
    method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
    headers,
    body: options.body,
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

const chat = (upstream: FakeUpstream, key: string | undefined, extra = ''): Promise<Reply> =>
  call(upstream, '/v1/chat/completions', { key, body: `{"model":"gpt-4o-mini","messages":[]${extra}}` });

function errorOf(reply: Reply): { message: string; type: string; param: null; code: string | null } {
  return (JSON.parse(reply.text) as { error: { message: string; type: string; param: null; code: string | null } }).error;
}

describe('ok responses', () => {
  it('answers each endpoint with an OpenAI-shaped body and an x-request-id', async () => {
    const upstream = await start();
    const models = await call(upstream, '/v1/models');
    expect(models.status).toBe(200);
    expect(models.headers['content-type']).toBe('application/json');
    expect(models.headers['x-request-id']).toMatch(/^req_/);
    expect(JSON.parse(models.text)).toMatchObject({
      object: 'list',
      data: expect.arrayContaining([{ id: 'gpt-4o-mini', object: 'model', created: expect.any(Number) as unknown, owned_by: 'fake' }]) as unknown,
    });
    expect(JSON.parse((await call(upstream, '/models')).text)).toMatchObject({ object: 'list' });
    expect(JSON.parse((await call(upstream, '/v1/models/gpt-4o')).text)).toMatchObject({ id: 'gpt-4o', object: 'model' });

    const completion = JSON.parse((await chat(upstream, KEY)).text) as OpenAI.ChatCompletion;
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]?.message).toMatchObject({ role: 'assistant', content: 'Hello from the fake upstream.' });
    expect(completion.usage?.total_tokens).toBeGreaterThan(0);

    const batch = await call(upstream, '/v1/embeddings', { body: '{"model":"m","input":["a","b"],"encoding_format":"float"}' });
    const embeddings = JSON.parse(batch.text) as OpenAI.CreateEmbeddingResponse;
    expect(embeddings.data.map((item) => [item.index, item.embedding.length])).toEqual([[0, 8], [1, 8]]);
    expect(embeddings.usage.total_tokens).toBeGreaterThan(0);

    expect(JSON.parse((await call(upstream, '/v1/completions', { body: '{}' })).text)).toMatchObject({ object: 'text_completion' });
    expect(JSON.parse((await call(upstream, '/v1/responses', { body: '{}' })).text)).toMatchObject({ object: 'response', status: 'completed' });

    const missing = await call(upstream, '/v1/nope?x=1', { method: 'DELETE' });
    expect(missing.status).toBe(404);
    expect(errorOf(missing)).toEqual({ message: 'Invalid URL (DELETE /v1/nope)', type: 'invalid_request_error', param: null, code: null });
  });

  it('waits latencyMs plus the behaviour delay before answering', async () => {
    const upstream = await start({ latencyMs: 20 });
    upstream.script(KEY, { kind: 'ok', delayMs: 30 });
    const started = performance.now();
    expect((await chat(upstream, KEY)).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });
});

describe('failure behaviours', () => {
  const cases: { behavior: Behavior; status: number; type: string; code: string | null }[] = [
    { behavior: { kind: 'insufficient_quota' }, status: 429, type: 'insufficient_quota', code: 'insufficient_quota' },
    { behavior: { kind: 'payment_required' }, status: 402, type: 'insufficient_quota', code: 'payment_required' },
    { behavior: { kind: 'unauthorized' }, status: 401, type: 'invalid_request_error', code: 'invalid_api_key' },
    { behavior: { kind: 'forbidden' }, status: 403, type: 'invalid_request_error', code: 'permission_denied' },
    { behavior: { kind: 'server_error' }, status: 500, type: 'server_error', code: null },
    { behavior: { kind: 'server_error', status: 503 }, status: 503, type: 'server_error', code: null },
    { behavior: { kind: 'rate_limit' }, status: 429, type: 'requests', code: 'rate_limit_exceeded' },
  ];
  it.each(cases)('$behavior.kind $status', async ({ behavior, status, type, code }) => {
    const upstream = await start();
    upstream.script(KEY, behavior);
    const reply = await chat(upstream, KEY);
    expect(reply.status).toBe(status);
    expect(reply.headers['x-request-id']).toMatch(/^req_/);
    expect(errorOf(reply)).toMatchObject({ type, code, param: null });
  });

  it('uses the exact insufficient_quota body OpenAI sends', async () => {
    const upstream = await start({ keys: { [KEY]: { kind: 'insufficient_quota' } } });
    const error = errorOf(await chat(upstream, KEY));
    expect(error.message).toMatch(/^You exceeded your current quota/);
  });

  const styles: { behavior: Behavior; headers: Record<string, string | undefined> }[] = [
    { behavior: { kind: 'rate_limit' }, headers: { 'retry-after': '1' } },
    { behavior: { kind: 'rate_limit', style: 'retry-after', ms: 1500 }, headers: { 'retry-after': '2' } },
    { behavior: { kind: 'rate_limit', style: 'retry-after-ms', ms: 250 }, headers: { 'retry-after-ms': '250', 'retry-after': undefined } },
    { behavior: { kind: 'rate_limit', style: 'retry-after-date', ms: 2000 }, headers: { 'retry-after': 'Tue, 14 Nov 2023 22:13:23 GMT' } },
    {
      behavior: { kind: 'rate_limit', style: 'x-ratelimit', ms: 360_000 },
      headers: { 'x-ratelimit-limit-requests': '60', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '6m0s' },
    },
    { behavior: { kind: 'rate_limit', style: 'x-ratelimit', ms: 20 }, headers: { 'x-ratelimit-reset-requests': '20ms' } },
    {
      behavior: { kind: 'rate_limit', style: 'none', ms: 5000 },
      headers: { 'retry-after': undefined, 'retry-after-ms': undefined, 'x-ratelimit-reset-requests': undefined },
    },
  ];
  it.each(styles)('rate_limit $behavior.style $behavior.ms tells the wait its way', async ({ behavior, headers }) => {
    const upstream = await start({ now: () => 1_700_000_000_500 });
    upstream.script(KEY, behavior);
    const reply = await chat(upstream, KEY);
    expect(reply.status).toBe(429);
    for (const [name, value] of Object.entries(headers)) expect(reply.headers[name], name).toBe(value);
  });

  it('plays an arbitrary status with its body and headers, or an empty body', async () => {
    const upstream = await start();
    upstream.script(
      KEY,
      { kind: 'status', status: 418, body: '<teapot/>', headers: { 'Content-Type': 'text/html', 'x-custom': 'yes' } },
      { kind: 'status', status: 503 },
      { kind: 'status', status: 204 },
    );
    const teapot = await chat(upstream, KEY);
    expect([teapot.status, teapot.text, teapot.headers['content-type'], teapot.headers['x-custom']]).toEqual([418, '<teapot/>', 'text/html', 'yes']);
    const bare = await chat(upstream, KEY);
    expect([bare.status, bare.text, bare.headers['content-length']]).toEqual([503, '', '0']);
    expect((await chat(upstream, KEY)).status).toBe(204);
  });

  it('never puts the key in a header or body', async () => {
    const behaviors: Behavior[] = [
      { kind: 'ok' }, { kind: 'stream', chunks: 2 }, { kind: 'rate_limit', style: 'x-ratelimit' }, { kind: 'insufficient_quota' },
      { kind: 'payment_required' }, { kind: 'unauthorized' }, { kind: 'forbidden' }, { kind: 'server_error' },
    ];
    const upstream = await start({ acceptKeys: [KEY] });
    upstream.script(KEY, ...behaviors);
    for (let i = 0; i < behaviors.length; i++) {
      const reply = await chat(upstream, KEY);
      expect(JSON.stringify(reply.headers) + reply.text).not.toContain(KEY);
    }
    const rejected = await chat(upstream, OTHER);
    expect(JSON.stringify(rejected.headers) + rejected.text).not.toContain(OTHER);
  });

  it('rejects a malformed behaviour where it is written, without naming the key', async () => {
    const upstream = await start();
    expect(() => upstream.script(KEY, { kind: 'stream', chunks: 0 })).toThrow(TypeError);
    expect(() => upstream.setDefault(KEY, { kind: 'nope' } as unknown as Behavior)).toThrow(/setDefault/);
    const typo = { kind: 'ok', delay: 1 } as unknown as Behavior;
    const failure: unknown = await startFakeUpstream({ keys: { [KEY]: typo } }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(TypeError);
    expect((failure as TypeError).message).toMatch(/keys entry #1/);
    expect((failure as TypeError).message).not.toContain(KEY);
  });
});

describe('scripts and defaults', () => {
  it('consumes each key’s script in order, then its default, then ok', async () => {
    const upstream = await start({ keys: { [OTHER]: { kind: 'forbidden' } } });
    upstream.script(KEY, { kind: 'rate_limit' }, { kind: 'server_error' });
    upstream.script(KEY, { kind: 'payment_required' });
    upstream.script(OTHER, { kind: 'unauthorized' });
    const statuses = async (key: string, n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await chat(upstream, key)).status);
      return out;
    };
    expect(await statuses(KEY, 4)).toEqual([429, 500, 402, 200]);
    expect(await statuses(OTHER, 3)).toEqual([401, 403, 403]);
    upstream.setDefault(KEY, { kind: 'insufficient_quota' });
    expect(await statuses(KEY, 1)).toEqual([429]);
    upstream.script(KEY, { kind: 'ok' });
    upstream.reset();
    expect(await statuses(KEY, 1)).toEqual([429]);
  });

  it('reads the key from x-api-key too; a request without a key gets ok', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'forbidden' });
    const reply = await call(upstream, '/v1/models', { key: undefined, headers: { 'x-api-key': KEY } });
    expect(reply.status).toBe(403);
    expect((await call(upstream, '/v1/models', { key: undefined })).status).toBe(200);
  });
});

describe('rate-limit window', () => {
  it('counts per key in a fixed window on the injected clock', async () => {
    let now = 10_000;
    const upstream = await start({ rateLimit: { requests: 2, windowMs: 1000 }, now: () => now });
    const first = await chat(upstream, KEY);
    expect([first.status, first.headers['x-ratelimit-limit-requests'], first.headers['x-ratelimit-remaining-requests'], first.headers['x-ratelimit-reset-requests']])
      .toEqual([200, '2', '1', '1s']);
    now += 250;
    expect((await chat(upstream, KEY)).headers['x-ratelimit-remaining-requests']).toBe('0');
    now += 100;
    const over = await chat(upstream, KEY);
    expect(over.status).toBe(429);
    expect(errorOf(over).code).toBe('rate_limit_exceeded');
    expect([over.headers['retry-after-ms'], over.headers['retry-after'], over.headers['x-ratelimit-remaining-requests'], over.headers['x-ratelimit-reset-requests']])
      .toEqual(['650', '1', '0', '650ms']);
    expect((await chat(upstream, OTHER)).status).toBe(200);
    now = 11_000;
    expect((await chat(upstream, KEY)).headers['x-ratelimit-remaining-requests']).toBe('1');
    upstream.reset();
    expect((await chat(upstream, KEY)).headers['x-ratelimit-remaining-requests']).toBe('1');
  });

  it('lets scripted failures through without spending the window', async () => {
    const upstream = await start({ rateLimit: { requests: 1, windowMs: 60_000 } });
    upstream.script(KEY, { kind: 'server_error' });
    expect((await chat(upstream, KEY)).status).toBe(500);
    expect((await chat(upstream, KEY)).status).toBe(200);
    expect((await chat(upstream, KEY)).status).toBe(429);
  });
});

describe('streams', () => {
  it('sends each chunk as its own event with the configured gap, then [DONE]', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'stream', chunks: 3, gapMs: 40 });
    const res = await request(`${upstream.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: '{}',
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    const arrivals: { at: number; text: string }[] = [];
    for await (const chunk of res.body) arrivals.push({ at: performance.now(), text: String(chunk) });
    const events = arrivals.map((a) => a.text);
    expect(events).toHaveLength(4);
    expect(events.every((text) => /^data: [^\n]+\n\n$/.test(text))).toBe(true);
    expect(events[3]).toBe('data: [DONE]\n\n');
    const chunks = events.slice(0, 3).map((text) => JSON.parse(text.slice(6)) as OpenAI.ChatCompletionChunk);
    expect(chunks.map((c) => [c.object, c.choices[0]?.finish_reason])).toEqual([
      ['chat.completion.chunk', null], ['chat.completion.chunk', null], ['chat.completion.chunk', 'stop'],
    ]);
    for (let i = 1; i < arrivals.length; i++) {
      expect((arrivals[i]?.at ?? 0) - (arrivals[i - 1]?.at ?? 0)).toBeGreaterThanOrEqual(30);
    }
  });

  it('with gapMs, sends the head before the first event is due', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'error_in_stream', gapMs: 60_000 });
    // Without the head flushed first this would wait the whole gap (and time the test out).
    const res = await request(`${upstream.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: '{"stream":true}',
    });
    expect([res.statusCode, res.headers['content-type']]).toEqual([200, 'text/event-stream']);
    res.body.destroy();
  });

  it('streams an ok chat request that asks for it', async () => {
    const upstream = await start();
    const reply = await chat(upstream, KEY, ',"stream":true');
    expect(reply.headers['content-type']).toBe('text/event-stream');
    expect(reply.text.match(/^data: /gm)).toHaveLength(6);
  });
});

describe('recording', () => {
  it('records method, path with query, headers, exact body bytes, key and time', async () => {
    const upstream = await start({ now: () => 42 });
    const body = Buffer.from([0x7b, 0xff, 0x00, 0xc3, 0x28, 0x7d]);
    await call(upstream, '/v1/embeddings?trace=1', { body, headers: { 'x-extra': 'a' } });
    expect(upstream.requests).toHaveLength(1);
    const recorded = upstream.requests[0];
    expect(recorded).toMatchObject({ method: 'POST', path: '/v1/embeddings?trace=1', key: KEY, at: 42 });
    expect(recorded?.headers['x-extra']).toBe('a');
    expect(recorded?.body.equals(body)).toBe(true);
    upstream.reset();
    expect(upstream.requests).toHaveLength(0);
  });

  it('records nothing when record is false', async () => {
    const upstream = await start({ record: false });
    await chat(upstream, KEY);
    expect(upstream.requests).toHaveLength(0);
  });
});

describe('acceptKeys', () => {
  it('answers any other key, or none, with 401 invalid_api_key', async () => {
    const upstream = await start({ acceptKeys: [KEY] });
    expect((await chat(upstream, KEY)).status).toBe(200);
    const wrong = await chat(upstream, OTHER);
    expect([wrong.status, errorOf(wrong).code]).toEqual([401, 'invalid_api_key']);
    const none = await chat(upstream, undefined);
    expect([none.status, errorOf(none).code]).toEqual([401, 'invalid_api_key']);
    expect(upstream.requests.map((r) => r.key)).toEqual([KEY, OTHER, undefined]);
  });
});

describe('hang', () => {
  it('keeps the request open until the client aborts, and still serves others', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'hang' });
    const controller = new AbortController();
    const hanging = request(`${upstream.url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` }, signal: controller.signal });
    const settled = await Promise.race([hanging.then(() => 'answered'), new Promise((r) => setTimeout(r, 50, 'pending'))]);
    expect(settled).toBe('pending');
    controller.abort();
    await expect(hanging).rejects.toThrow();
    expect((await chat(upstream, KEY)).status).toBe(200);
  });

  it('close() destroys a hanging socket and resolves', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'hang' });
    const hanging = request(`${upstream.url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } });
    // Until the request has arrived (a fixed sleep lost that race on a loaded machine).
    await waitFor(() => upstream.requests.length === 1);
    await upstream.close();
    await expect(hanging).rejects.toThrow();
  });
});

describe('with the official openai client', () => {
  it('lists models, embeds, and completes chat plain and streamed', async () => {
    const upstream = await start({ acceptKeys: [KEY] });
    const client = new OpenAI({ apiKey: KEY, baseURL: `${upstream.url}/v1`, maxRetries: 0 });

    const models = [];
    for await (const model of client.models.list()) models.push(model.id);
    expect(models).toContain('gpt-4o-mini');

    // No encoding_format: the client asks for base64 and decodes it back to floats.
    const embedding = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hi' });
    expect(embedding.data[0]?.embedding).toEqual([0.5, -0.25, 0.125, 0, 1, -1, 0.75, -0.5]);

    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(completion.choices[0]?.message.content).toBe('Hello from the fake upstream.');

    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage ??= chunk.usage;
    }
    expect(text).toBe('Hello from the fake upstream.');
    expect(usage?.completion_tokens).toBe(5);

    const rejected = new OpenAI({ apiKey: OTHER, baseURL: `${upstream.url}/v1`, maxRetries: 0 });
    await expect(rejected.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });
});
