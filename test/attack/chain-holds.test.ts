// Attacks on fallback chains, circuits and shared-prefix routing (issue 14) that the code withstood at
// bb4cd3f: regression guards for what test/proxy/{fallback,circuit,model-routing}.test.ts do not cover.
// Each tries to break one rule end to end against fault upstreams on loopback. Findings (tests that fail)
// are in chain-findings.test.ts.
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { chainHarness, completion, type ChainHarness } from '../helpers/chain.js';
import { act } from '../helpers/fault-upstream.js';
import { waitFor } from '../helpers/wait.js';

const open: ChainHarness[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});
async function chain(...args: Parameters<typeof chainHarness>): Promise<ChainHarness> {
  const h = await chainHarness(...args);
  open.push(h);
  return h;
}

const modelOf = (body: Buffer): unknown => (JSON.parse(body.toString()) as { model?: unknown }).model;
const ok = (from: string) => () => act.afterBody((r) => act.json(200, completion(String(modelOf(r.body)), from)));
const down = () => act.json(503, { error: { message: 'upstream overloaded', type: 'server_error' } });
const lists = (from: string, ids: readonly string[]) => () =>
  act.afterBody((r) => (r.method === 'GET' ? act.json(200, { object: 'list', data: ids.map((id) => ({ id, object: 'model' })) }) : act.json(200, completion(String(modelOf(r.body)), from))));

/** Every pool's in-flight count and every room's size, by upstream: all zero when nothing is held. */
function held(h: ChainHarness): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pool] of h.app.pools) out[name] = pool.states().reduce((n, s) => n + s.inflight, 0) + h.app.rooms.get(name)!.size;
  return out;
}
const nothingHeld = (h: ChainHarness): Record<string, number> => Object.fromEntries([...h.app.pools.keys()].map((n) => [n, 0]));

/** A POST the test can abandon; resolves 'aborted' when it is. */
function abandonable(url: string, body: unknown): { abort: () => void; done: Promise<unknown> } {
  const ctl = new AbortController();
  const done = fetch(url, { method: 'POST', signal: ctl.signal, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).catch(() => 'aborted');
  return { abort: () => ctl.abort(), done };
}

describe('guard: a client leaving mid-walk', () => {
  it('guard: leaving while waiting in the fallback’s room ends every lease and wait, on every target', async () => {
    const h = await chain(
      [
        { name: 'primary', script: down, keys: 1, config: { fallbacks: [{ upstream: 'azure' }] } },
        { name: 'azure', script: () => act.json(429, { error: { message: 'Rate limit reached' } }, { 'retry-after': '20' }), keys: 1 },
      ],
      { retry: { maxWaitMs: 30_000 } },
    );
    const c = abandonable(`${h.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [] });
    await waitFor(() => h.app.rooms.get('azure')!.size === 1);
    c.abort();
    expect(await c.done).toBe('aborted');
    await waitFor(() => h.requestLines().length === 1);
    await waitFor(() => Object.values(held(h)).every((n) => n === 0)).catch(() => undefined);
    expect(held(h)).toEqual(nothingHeld(h));
    expect(h.requestLines()[0]!.status).toBe(499);
    expect(h.requestLines()[0]!.chain).toEqual(['primary', 'azure']);
  });

  it('guard: leaving during GET /models while a member’s body is coming sends nothing to the next member', async () => {
    const h = await chain(
      [
        { name: 'openai', script: () => act.raw('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"object":"list","data":[', 'keep'), config: { models: ['gpt-*'] } },
        { name: 'groq', script: lists('groq', ['llama']), config: { prefix: '/v1' } },
      ],
      { retry: { idleTimeoutMs: 60_000 } },
    );
    const ctl = new AbortController();
    const done = fetch(`${h.url}/v1/models`, { signal: ctl.signal }).catch(() => 'aborted');
    await waitFor(() => h.up.openai!.requests.length === 1);
    ctl.abort();
    await done;
    await waitFor(() => h.requestLines().length === 1);
    await waitFor(() => Object.values(held(h)).every((n) => n === 0)).catch(() => undefined);
    expect(held(h)).toEqual(nothingHeld(h));
    expect(h.up.groq!.requests).toHaveLength(0);
    expect(h.requestLines()[0]!.status).toBe(499);
  });
});

describe('guard: circuits count only the upstream’s faults', () => {
  it('guard: a client leaving while its request is on the wire is no fault of the upstream', async () => {
    const h = await chain([
      { name: 'primary', script: () => act.stallBeforeHeaders(), keys: 1, config: { fallbacks: [{ upstream: 'azure' }], circuit: { failures: 1 } } },
      { name: 'azure', script: ok('azure'), keys: 1 },
    ]);
    const c = abandonable(`${h.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [] });
    await waitFor(() => h.up.primary!.requests.length === 1);
    c.abort();
    await c.done;
    await waitFor(() => h.requestLines().length === 1);
    expect(h.app.circuits.get('primary')!.state(Date.now())).toBe('closed');
    expect(h.up.azure!.requests).toHaveLength(0);
  });

  it('guard: 429s are no faults: a rate-limited upstream never opens its circuit', async () => {
    const h = await chain(
      [
        { name: 'primary', script: () => act.json(429, { error: { message: 'Rate limit reached' } }, { 'retry-after': '60' }), keys: 2, config: { fallbacks: [{ upstream: 'azure' }], circuit: { failures: 1 } } },
        { name: 'azure', script: ok('azure'), keys: 1 },
      ],
      { retry: { maxWaitMs: 0 } },
    );
    expect((await h.call()).headers['x-keypool-upstream']).toBe('azure');
    expect(h.app.circuits.get('primary')!.state(Date.now())).toBe('closed');
  });
});

describe('guard: streams', () => {
  it('guard: an error in the first event of a 200 stream (commit on content) goes to the fallback with nothing sent, the primary asked once', async () => {
    const h = await chain([
      {
        name: 'primary',
        script: () => act.stream([JSON.stringify({ error: { code: 502, message: 'Provider returned error' } })]),
        keys: 2,
        config: { commitOnContent: true, fallbacks: [{ upstream: 'azure' }] },
      },
      { name: 'azure', script: () => act.stream([JSON.stringify({ choices: [{ delta: { content: 'from azure' } }] })]), keys: 1 },
    ]);
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o', stream: true, messages: [] });
    expect(r.status).toBe(200);
    expect(r.headers['x-keypool-upstream']).toBe('azure');
    expect(r.text).toContain('from azure');
    expect(r.text).not.toContain('Provider returned error');
    expect(h.up.primary!.requests).toHaveLength(1);
  });
});

describe('guard: hostile bodies on a shared prefix', () => {
  const token = 'kp-client-token-hostile-routing-0123456789';
  const shared = (o: Parameters<typeof chainHarness>[1] = {}) =>
    chain(
      [
        { name: 'openai', script: ok('openai'), config: { models: ['gpt-*'] } },
        { name: 'groq', script: ok('groq'), config: { prefix: '/v1' } },
      ],
      o,
    );

  it('guard: a repeated or escaped `model` routes as JSON.parse reads it (the last, unescaped)', async () => {
    const h = await shared();
    const twice = await h.call('/v1/chat/completions', '{"model":"gpt-4o","messages":[],"model":"llama-3.3-70b"}');
    expect(JSON.parse(twice.text).choices[0].message.content).toBe('from groq');
    const escaped = await h.call('/v1/chat/completions', '{"mod\\u0065l":"gpt-4o","messages":[]}');
    expect(JSON.parse(escaped.text).choices[0].message.content).toBe('from openai');
  });

  it('guard: a client allowed one member cannot reach the other with a repeated, non-string or oversized model', async () => {
    const h = await shared({ clients: [{ name: 'agent', token, upstreams: ['openai'] }] });
    const auth = { headers: { authorization: `Bearer ${token}` } };
    for (const body of ['{"model":"gpt-4o","model":"llama-3.3-70b","messages":[]}', '{"model":{"id":"gpt-4o"},"messages":[]}', `{"model":"gpt-${'x'.repeat(300)}","messages":[]}`, '{"messages":[]}']) {
      const r = await h.call('/v1/chat/completions', body, auth);
      expect(r.status, body.slice(0, 60)).toBe(403);
    }
    expect(h.up.groq!.requests).toHaveLength(0);
  });
});

describe('guard: GET /models union', () => {
  it('guard: a gzip member is read, a member answering garbage is left out', async () => {
    const gz = gzipSync(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o' }, { id: 'whisper-1' }] }));
    const h = await chain([
      { name: 'openai', script: () => act.respond(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gz), config: { models: ['gpt-*'] } },
      { name: 'mistral', script: () => act.respond(200, { 'content-type': 'application/json' }, '<html>not a list</html>'), config: { prefix: '/v1', models: ['mistral-*'] } },
      { name: 'groq', script: lists('groq', ['llama', 'gpt-4o']), config: { prefix: '/v1' } },
    ]);
    const r = await h.call('/v1/models', undefined, { method: 'GET' });
    expect(r.status).toBe(200);
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(r.text).data.map((m: { id: string }) => m.id)).toEqual(['gpt-4o', 'llama']);
    expect(held(h)).toEqual(nothingHeld(h));
  });
});
