// The Anthropic personality against undici (exact events and headers) and the official
// @anthropic-ai/sdk (the bodies, streams and errors are ones it accepts and classifies).
import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream, FakeUpstreamOptions } from '../../src/fake-upstream/server.js';
import { call, chat, sseEvents } from './provider-calls.js';

const KEY = 'sk-ant-fake-secret-0123456789abcdef';
const TOKEN = 'sk-ant-oat-fake-token-0123456789';
const TEXT = 'Hello from the fake upstream.';
const MODEL = 'claude-sonnet-4-5-20250929';
const MESSAGE = { model: MODEL, max_tokens: 64, messages: [{ role: 'user' as const, content: 'hi' }] };

let opened: FakeUpstream[] = [];
afterEach(async () => {
  await Promise.all(opened.map((upstream) => upstream.close()));
  opened = [];
});
async function start(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream({ provider: 'anthropic', ...options });
  opened.push(upstream);
  return upstream;
}
const client = (upstream: FakeUpstream, apiKey = KEY): Anthropic => new Anthropic({ apiKey, baseURL: upstream.url, maxRetries: 0 });

describe('anthropic-version', () => {
  it('is required on every request, before the key\'s script is consumed', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'rate_limit' });
    for (const path of ['/v1/messages', '/v1/messages/count_tokens', '/v1/models']) {
      const reply = await call(upstream, path, {
        method: path === '/v1/models' ? 'GET' : 'POST',
        headers: { 'x-api-key': KEY },
        ...(path === '/v1/models' ? {} : { body: JSON.stringify(MESSAGE) }),
      });
      expect(reply.status).toBe(400);
      expect(JSON.parse(reply.text)).toEqual({
        type: 'error',
        error: { type: 'invalid_request_error', message: 'anthropic-version: header is required' },
      });
      expect(reply.headers['request-id']).toMatch(/^req_/);
    }
    expect((await chat(upstream, { key: KEY })).status).toBe(429);
  });
});

describe('with the official Anthropic client', () => {
  it('creates, streams and counts messages and lists models; the key is read from x-api-key', async () => {
    const upstream = await start({ acceptKeys: [KEY] });
    const anthropic = client(upstream);
    const message = await anthropic.messages.create(MESSAGE);
    expect(message.content).toEqual([{ type: 'text', text: TEXT }]);
    expect([message.model, message.stop_reason, message.usage.input_tokens, message.usage.output_tokens]).toEqual([MODEL, 'end_turn', 9, 6]);

    const stream = anthropic.messages.stream(MESSAGE);
    const events: string[] = [];
    stream.on('streamEvent', (event) => events.push(event.type));
    const final = await stream.finalMessage();
    expect(final.content).toEqual([{ type: 'text', text: TEXT }]);
    expect(final.usage.output_tokens).toBe(5);
    expect(events).toEqual([
      'message_start', 'content_block_start',
      'content_block_delta', 'content_block_delta', 'content_block_delta', 'content_block_delta', 'content_block_delta',
      'content_block_stop', 'message_delta', 'message_stop',
    ]);

    const counted = await anthropic.messages.countTokens({ model: MODEL, messages: MESSAGE.messages });
    expect(counted.input_tokens).toBeGreaterThan(0);

    const ids: string[] = [];
    for await (const model of anthropic.models.list()) ids.push(model.id);
    expect(ids).toContain(MODEL);
    expect((await anthropic.models.retrieve(MODEL)).display_name).toBe('Claude Sonnet 4.5');

    // The SDK sends its own API version date; the fake only insists that there is one.
    for (const recorded of upstream.requests) {
      expect(recorded.key).toBe(KEY);
      expect(recorded.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    }
    await expect(client(upstream, 'sk-ant-wrong').messages.create(MESSAGE)).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it('reads a bearer token (authToken) when there is no x-api-key', async () => {
    const upstream = await start({ acceptKeys: [TOKEN] });
    const anthropic = new Anthropic({ authToken: TOKEN, apiKey: null, baseURL: upstream.url, maxRetries: 0 });
    expect((await anthropic.messages.create(MESSAGE)).content).toHaveLength(1);
    expect(upstream.requests[0]?.key).toBe(TOKEN);
  });

  it('classifies every scripted failure as the SDK\'s matching error', async () => {
    const upstream = await start({ now: () => 1_700_000_000_000 });
    const anthropic = client(upstream);
    const expected = [
      [{ kind: 'rate_limit', ms: 30_000 }, Anthropic.RateLimitError, 429, 'rate_limit_error'],
      [{ kind: 'unauthorized' }, Anthropic.AuthenticationError, 401, 'authentication_error'],
      [{ kind: 'forbidden' }, Anthropic.PermissionDeniedError, 403, 'permission_error'],
      [{ kind: 'model_not_found' }, Anthropic.NotFoundError, 404, 'not_found_error'],
      [{ kind: 'insufficient_quota' }, Anthropic.BadRequestError, 400, 'invalid_request_error'],
      [{ kind: 'server_error' }, Anthropic.InternalServerError, 500, 'api_error'],
      [{ kind: 'overloaded' }, Anthropic.InternalServerError, 529, 'overloaded_error'],
    ] as const;
    for (const [behavior, type, status, errorType] of expected) {
      upstream.script(KEY, behavior);
      const error: unknown = await anthropic.messages.create(MESSAGE).catch((e: unknown) => e);
      expect(error, behavior.kind).toBeInstanceOf(type);
      const e = error as InstanceType<typeof Anthropic.APIError>;
      expect([e.status, (e.error as { error: { type: string } }).error.type]).toEqual([status, errorType]);
      if (behavior.kind === 'rate_limit') {
        expect(e.headers?.get('retry-after')).toBe('30');
        expect(e.headers?.get('anthropic-ratelimit-requests-remaining')).toBe('0');
        expect(e.headers?.get('anthropic-ratelimit-requests-reset')).toBe('2023-11-14T22:13:50Z');
      }
    }
  });

  it('plays overloaded_error inside a 200 stream, first or after some events', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'error_in_stream', after: 3 });
    const raw = await chat(upstream, { key: KEY, stream: true });
    expect(raw.status).toBe(200);
    expect(sseEvents(raw.text).map((e) => e.event)).toEqual(['message_start', 'content_block_start', 'ping', 'error']);

    upstream.script(KEY, { kind: 'error_in_stream' });
    const error: unknown = await client(upstream).messages.stream(MESSAGE).finalMessage().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect((error as InstanceType<typeof Anthropic.APIError>).error).toEqual({
      type: 'error',
      error: { type: 'overloaded_error', message: 'Overloaded' },
    });
  });

  it('answers an unknown route with not_found_error', async () => {
    const upstream = await start();
    const reply = await call(upstream, '/v1/nope', { headers: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01' } });
    expect(reply.status).toBe(404);
    expect(JSON.parse(reply.text)).toEqual({ type: 'error', error: { type: 'not_found_error', message: 'Not Found' } });
  });
});
