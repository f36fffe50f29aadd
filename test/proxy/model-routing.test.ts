// Several upstreams on one prefix: a request goes to the upstream that lists its model (or the one that
// lists none), GET <prefix>/models answers the union, a model nobody lists is refused, and a client's
// allow-list is checked against the upstream chosen.
import { afterEach, describe, expect, it } from 'vitest';
import { act } from '../helpers/fault-upstream.js';
import { chainHarness, completion, type ChainHarness } from '../helpers/chain.js';

const open: ChainHarness[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

const answer = (from: string, list: readonly string[]) => () =>
  act.afterBody((r) => (r.method === 'GET' ? act.json(200, { object: 'list', data: list.map((id) => ({ id, object: 'model' })) }) : act.json(200, completion(JSON.parse(r.body.toString()).model, from))));

async function shared(o: Parameters<typeof chainHarness>[1] = {}, bListsModels = false): Promise<ChainHarness> {
  const h = await chainHarness(
    [
      { name: 'openai', script: answer('openai', ['gpt-4o', 'o3', 'whisper-1']), config: { models: ['gpt-*', 'o3*'] } },
      { name: 'groq', script: answer('groq', ['llama-3.3-70b', 'gpt-4o']), config: { prefix: '/v1', ...(bListsModels ? { models: ['llama-*'] } : {}) } },
    ],
    o,
  );
  open.push(h);
  return h;
}

describe('model routing on a shared prefix', () => {
  it('each request goes to the upstream serving its model; the rest to the one listing none', async () => {
    const h = await shared();
    const gpt = await h.call('/v1/chat/completions', { model: 'gpt-4o', messages: [] });
    expect(JSON.parse(gpt.text).choices[0].message.content).toBe('from openai');
    const llama = await h.call('/v1/chat/completions', { model: 'llama-3.3-70b', messages: [] });
    expect(JSON.parse(llama.text).choices[0].message.content).toBe('from groq');
    const none = await h.call('/v1/embeddings', { input: 'x' });
    expect(JSON.parse(none.text).choices[0].message.content).toBe('from groq');
    expect(h.up.openai!.requests.map((r) => r.key?.startsWith('sk-openai-'))).toEqual([true]);
    expect(h.up.groq!.requests.every((r) => r.key?.startsWith('sk-groq-'))).toBe(true);
    expect(h.requestLines().map((l) => l.upstream)).toEqual(['openai', 'groq', 'groq']);
  });

  it('GET /models lists the union, each upstream only for what it serves', async () => {
    const h = await shared();
    const r = await h.call('/v1/models', undefined, { method: 'GET' });
    expect(r.status).toBe(200);
    // openai serves gpt-* and o3*: whisper-1 is not its to list here; groq lists the rest, gpt-4o once.
    expect(JSON.parse(r.text).data.map((m: { id: string }) => m.id)).toEqual(['gpt-4o', 'o3', 'llama-3.3-70b']);
    expect(r.headers['x-keypool-attempts']).toBe('2');
  });

  it('GET /models still answers when one member is down', async () => {
    const h = await chainHarness([
      { name: 'openai', script: () => act.json(503, { error: { message: 'down' } }), config: { models: ['gpt-*'] } },
      { name: 'groq', script: answer('groq', ['llama']), config: { prefix: '/v1' } },
    ], { retry: { maxRetries: 0 } });
    open.push(h);
    const r = await h.call('/v1/models', undefined, { method: 'GET' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).data).toEqual([{ id: 'llama', object: 'model' }]);
  });

  it('GET /models is one request: a member down is left after its walk, the last member spends the shared budget', async () => {
    const down = () => act.json(503, { error: { message: 'down' } });
    const h = await chainHarness([
      { name: 'openai', script: down, keys: 1, config: { models: ['gpt-*'] } },
      { name: 'groq', script: down, keys: 1, config: { prefix: '/v1' } },
    ], { retry: { maxRetries: 2 } });
    open.push(h);
    const r = await h.call('/v1/models', undefined, { method: 'GET' });
    expect(r.status).toBe(503);
    // 1 (openai's walk) + 1 (groq's walk) + 2 (the budget, spent once for the request).
    expect([h.up.openai!.requests.length, h.up.groq!.requests.length]).toEqual([1, 3]);
    expect(r.headers['x-keypool-attempts']).toBe('4');
  });

  it('a model no member lists is refused with keypool_model_not_served, nothing sent', async () => {
    const h = await shared({}, true);
    const r = await h.call('/v1/chat/completions', { model: 'mistral-large', messages: [] });
    expect(r.status).toBe(404);
    expect(JSON.parse(r.text).error.code).toBe('keypool_model_not_served');
    expect(h.up.openai!.requests.length + h.up.groq!.requests.length).toBe(0);
  });

  it('a client allowed only one member is refused for the other’s models, before anything is sent', async () => {
    const token = 'kp-client-token-routing-0123456789';
    const h = await shared({ clients: [{ name: 'agent', token, upstreams: ['openai'] }] });
    const auth = { headers: { authorization: `Bearer ${token}` } };
    expect((await h.call('/v1/chat/completions', { model: 'gpt-4o', messages: [] }, auth)).status).toBe(200);
    const other = await h.call('/v1/chat/completions', { model: 'llama-3.3-70b', messages: [] }, auth);
    expect(other.status).toBe(403);
    expect(JSON.parse(other.text).error.code).toBe('keypool_client_forbidden');
    expect(h.up.groq!.requests).toHaveLength(0);
  });
});
