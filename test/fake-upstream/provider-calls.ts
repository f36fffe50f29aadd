// Test helpers: one request the way each provider's clients send it (path, auth, version header), and
// a small SSE reader that keeps event names, so streams are checked event by event.
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';
import type { FakeUpstream, Provider } from '../../src/fake-upstream/server.js';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

export interface CallOptions {
  key?: string | undefined;
  /** Ask for the provider's stream (stream: true, Gemini's :streamGenerateContent?alt=sse). */
  stream?: boolean;
  /** Headers to add (or, with undefined, to leave out: `anthropic-version`). */
  headers?: Record<string, string | undefined>;
}

/** Where a chat-like request goes on each provider, and how it carries its key. */
export function chatRequest(provider: Provider, o: CallOptions = {}): { path: string; headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const key = 'key' in o ? o.key : undefined;
  const stream = o.stream === true;
  let path: string;
  let body: string;
  switch (provider) {
    case 'openai':
      path = '/v1/chat/completions';
      body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream });
      if (key !== undefined) headers['authorization'] = `Bearer ${key}`;
      break;
    case 'anthropic':
      path = '/v1/messages';
      body = JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }], stream });
      headers['anthropic-version'] = '2023-06-01';
      if (key !== undefined) headers['x-api-key'] = key;
      break;
    case 'gemini':
      path = stream ? '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse' : '/v1beta/models/gemini-2.5-flash:generateContent';
      body = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] });
      if (key !== undefined) headers['x-goog-api-key'] = key;
      break;
    case 'azure':
      path = '/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21';
      body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream });
      if (key !== undefined) headers['api-key'] = key;
      break;
    case 'openrouter':
      path = '/api/v1/chat/completions';
      body = JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream });
      if (key !== undefined) headers['authorization'] = `Bearer ${key}`;
      break;
  }
  for (const [name, value] of Object.entries(o.headers ?? {})) {
    if (value === undefined) delete headers[name];
    else headers[name] = value;
  }
  return { path, headers, body };
}

export async function call(upstream: FakeUpstream, path: string, init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  const res = await request(`${upstream.url}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: init.headers,
    body: init.body,
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

export function chat(upstream: FakeUpstream, o: CallOptions = {}): Promise<Reply> {
  const { path, headers, body } = chatRequest(upstream.provider, o);
  return call(upstream, path, { headers, body });
}

export interface SseEvent {
  event: string | undefined;
  data: string;
}

/** Events (comments dropped) of an SSE body, LF or CRLF framed. */
export function sseEvents(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length > 0) events.push({ event, data: data.join('\n') });
  }
  return events;
}

/** The text a provider's stream spells out. */
export function streamedText(provider: Provider, text: string): string {
  let out = '';
  for (const { data } of sseEvents(text)) {
    if (data === '[DONE]') continue;
    const value = JSON.parse(data) as unknown;
    if (provider === 'anthropic') out += (value as { delta?: { text?: string } }).delta?.text ?? '';
    else if (provider === 'gemini') out += (value as { candidates?: { content: { parts: { text: string }[] } }[] }).candidates?.[0]?.content.parts[0]?.text ?? '';
    else out += (value as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta?.content ?? '';
  }
  return out;
}

/** The answer's text in a provider's plain (non-streamed) success body. */
export function answerText(provider: Provider, text: string): string | undefined {
  const value = JSON.parse(text) as unknown;
  if (provider === 'anthropic') return (value as { content: { text: string }[] }).content[0]?.text;
  if (provider === 'gemini') return (value as { candidates: { content: { parts: { text: string }[] } }[] }).candidates[0]?.content.parts[0]?.text;
  return (value as { choices: { message: { content: string } }[] }).choices[0]?.message.content;
}
