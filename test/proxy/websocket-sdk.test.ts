// The openai SDK's own WebSocket client (it uses `ws` on Node) through keypool: the Responses API in
// WebSocket mode, with a rotation at the handshake.
import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';
import { afterEach, describe, expect, it } from 'vitest';
import { startWsFakeUpstream, type WsFakeUpstream } from '../../src/fake-upstream/ws-server.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';
import { waitAllClosed } from './websocket-helpers.js';

const KEYS = ['sk-sdk-ws-key-one-aaaaaaa', 'sk-sdk-ws-key-two-bbbbbbb'];

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function setup(): Promise<{ u: WsFakeUpstream; p: TestProxy; client: OpenAI }> {
  const u = await startWsFakeUpstream();
  closers.push(() => u.close());
  const p = await startProxy({ upstreamUrl: u.url, keys: KEYS });
  closers.push(() => p.close());
  return { u, p, client: new OpenAI({ apiKey: 'sdk-client-token', baseURL: `${p.url}/v1`, maxRetries: 0 }) };
}

describe('openai SDK WebSocket clients through keypool', () => {
  it('ResponsesWS streams a response after a 429 rotation at the handshake', async () => {
    const { u, p, client } = await setup();
    u.script(KEYS[0]!, { kind: 'rate_limit', ms: 60_000 });
    const rws = new ResponsesWS(client);
    const seen: string[] = [];
    let text = '';
    rws.on('event', (e: { type: string }) => seen.push(e.type));
    rws.on('response.output_text.delta', (e: { delta: string }) => (text += e.delta));
    rws.on('error', (err: Error) => seen.push(`error:${err.message}`));
    rws.send({ type: 'response.create', model: 'gpt-5-codex', input: 'hi' });
    await waitFor(() => seen.includes('response.completed'));
    expect(text).toBe('Hello part1 part2');
    expect(seen.some((t) => t.startsWith('error'))).toBe(false);
    expect(u.handshakes.map((h) => h.key)).toEqual(KEYS);
    expect(u.handshakes.every((h) => !JSON.stringify(h.headers).includes('sdk-client-token'))).toBe(true);
    rws.close();
    await waitAllClosed(p);
  });

  // OpenAIRealtimeWS is not tested here: openai 6.49 always builds a wss:// URL for Realtime
  // (realtime/internal-base.mjs), and keypool listens on plain HTTP in tests. The raw Realtime path is
  // covered in websocket.test.ts.
});
