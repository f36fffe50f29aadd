// The one line per request: request id, client, model, the keys tried and why each was left, upstream
// vs proxy time, tokens from the answer's usage (streamed too); and the same record for listeners.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import type { RequestRecord } from '../../src/proxy/request-record.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

const KEYS = ['sk-log-key-aaaaaaaaaaaa1', 'sk-log-key-bbbbbbbbbbbb2'];
let upstream: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
});

const requestLines = (p: TestProxy) => p.logs.filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('request log line', () => {
  it('names the request, client, model, the keys tried and why, times and tokens', async () => {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: KEYS });
    const records: RequestRecord[] = [];
    proxy.app.proxy.onRequest((r) => records.push(r));
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 5000 });
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-agent-id': 'agent-7', 'x-request-id': 'client-req-42' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [] }),
    });
    await res.body.text();
    expect(res.headers['x-keypool-request-id']).toBe('client-req-42');
    await new Promise((r) => setTimeout(r, 20));
    const line = requestLines(proxy).at(-1)!;
    expect(line).toMatchObject({
      reqId: 'client-req-42',
      client: 'agent-7',
      model: 'gpt-4o-mini',
      stream: true,
      status: 200,
      attempts: 2,
      key: 'openai-2',
      tried: ['openai-1:429:rotate', 'openai-2:200:deliver'],
      tokensIn: 9,
      tokensOut: 5,
    });
    expect(typeof line.upstreamMs).toBe('number');
    expect(typeof line.proxyMs).toBe('number');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ id: 'client-req-42', status: 200, usage: { input: 9, output: 5 } });
    expect(proxy.pool.states()[1]!.tokens).toEqual({ input: 9, output: 5 });
    for (const k of KEYS) expect(proxy.logs.join('\n')).not.toContain(k);
  });

  it('generates an id when the client sends none, and keeps the upstream’s own request id', async () => {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: KEYS });
    upstream.script(KEYS[0]!, { kind: 'status', status: 200, body: '{"usage":{"prompt_tokens":3,"completion_tokens":2}}', headers: { 'x-request-id': 'req_upstream_1' } });
    const res = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"m"}' });
    await res.body.text();
    expect(res.headers['x-request-id']).toBe('req_upstream_1');
    const id = res.headers['x-keypool-request-id'];
    expect(typeof id).toBe('string');
    expect(String(id)).toMatch(/^[0-9a-f-]{36}$/);
    await new Promise((r) => setTimeout(r, 20));
    const line = requestLines(proxy).at(-1)!;
    expect(line).toMatchObject({ reqId: id, upstreamReqId: 'req_upstream_1', tokensIn: 3, tokensOut: 2, attempts: 1 });
    // One clean attempt: no trail on the line.
    expect(line.tried).toBeUndefined();
  });
});
