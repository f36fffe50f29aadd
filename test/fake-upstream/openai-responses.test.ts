// The OpenAI personality's Responses API: the plain body, the named-event stream in order, and its
// error event, as the official openai client reads them.
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/server.js';
import { call, sseEvents } from './provider-calls.js';

const KEY = 'sk-responses-secret-0123456789abcdef';
const TEXT = 'Hello from the fake upstream.';

let opened: FakeUpstream[] = [];
afterEach(async () => {
  await Promise.all(opened.map((upstream) => upstream.close()));
  opened = [];
});
async function start(): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream();
  opened.push(upstream);
  return upstream;
}
const post = (upstream: FakeUpstream, body: unknown) =>
  call(upstream, '/v1/responses', { headers: { authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });

describe('responses', () => {
  it('streams named events with increasing sequence numbers, response.created first and completed last', async () => {
    const upstream = await start();
    const reply = await post(upstream, { model: 'gpt-4o-mini', input: 'hi', stream: true });
    expect(reply.headers['content-type']).toBe('text/event-stream');
    const events = sseEvents(reply.text).map((e) => ({ event: e.event, data: JSON.parse(e.data) as { type: string; sequence_number: number } }));
    expect(events.every((e) => e.event === e.data.type)).toBe(true);
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events.map((e) => e.data.type)).toEqual([
      'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
      ...Array.from({ length: 5 }, () => 'response.output_text.delta'),
      'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed',
    ]);
    expect(reply.text).not.toContain('[DONE]');
  });

  it('is read by the openai client, plain and streamed', async () => {
    const upstream = await start();
    const client = new OpenAI({ apiKey: KEY, baseURL: `${upstream.url}/v1`, maxRetries: 0 });
    expect((await client.responses.create({ model: 'gpt-4o-mini', input: 'hi' })).output_text).toBe(TEXT);
    const stream = client.responses.stream({ model: 'gpt-4o-mini', input: 'hi' });
    let deltas = '';
    stream.on('response.output_text.delta', (event) => (deltas += event.delta));
    const final = await stream.finalResponse();
    expect([deltas, final.output_text, final.status, final.usage?.output_tokens]).toEqual([TEXT, TEXT, 'completed', 5]);

    upstream.script(KEY, { kind: 'stream', chunks: 2 });
    let text = '';
    for await (const event of await client.responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true })) {
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    expect(text).toBe('Hello from');
  });

  it('ends a failing stream with the Responses error event, which the client throws', async () => {
    const upstream = await start();
    upstream.script(KEY, { kind: 'error_in_stream', after: 2 });
    const reply = await post(upstream, { model: 'gpt-4o-mini', input: 'hi', stream: true });
    expect(sseEvents(reply.text).map((e) => e.event)).toEqual(['response.created', 'response.in_progress', 'error']);

    upstream.script(KEY, { kind: 'error_in_stream' });
    const client = new OpenAI({ apiKey: KEY, baseURL: `${upstream.url}/v1`, maxRetries: 0 });
    const error: unknown = await client.responses.stream({ model: 'gpt-4o-mini', input: 'hi' }).finalResponse().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
  });
});
