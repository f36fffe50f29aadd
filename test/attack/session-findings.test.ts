// Attacks on the fixes for the chain findings (96753e3..HEAD: one agent across reloads, capped shared
// circuits, GET /models on a shared prefix, headerSafe, maxWaitMs across a chain, allow-lists on
// fallbacks and WebSocket routing) that broke them. Every test here FAILED on the code it was written
// against (1f36dbd): each is one finding, named `attack: ...`, reproduced end to end against a real
// keypool on loopback with fault upstreams (test/helpers/chain.ts). All are fixed and kept as regression
// tests. Attacks the code withstood are in session-holds.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { chainHarness, completion, type ChainHarness } from '../helpers/chain.js';
import { act } from '../helpers/fault-upstream.js';
import { waitFor } from '../helpers/wait.js';
import { openWs } from '../proxy/websocket-helpers.js';

const open: ChainHarness[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

const token = 'kp-client-token-session-findings-0123456789';
const auth = { authorization: `Bearer ${token}` };

/** A harness whose close also searches everything logged for the client token. */
async function chain(...args: Parameters<typeof chainHarness>): Promise<ChainHarness> {
  const h = await chainHarness(...args);
  open.push({
    ...h,
    async close() {
      for (const l of h.logs) expect(l.includes(token), `the client token in ${l.slice(0, 200)}`).toBe(false);
      await h.close();
    },
  });
  return h;
}

const down = () => act.json(503, { error: { message: 'upstream overloaded', type: 'server_error' } });
/** A member answering GET <prefix>/models with these ids, and chat completions otherwise. */
const lists = (from: string, ids: readonly string[]) => () =>
  act.afterBody((r) => (r.method === 'GET' ? act.json(200, { object: 'list', data: ids.map((id) => ({ id, object: 'model' })) }) : act.json(200, completion('gpt-4o', from))));
/** Refuses a WebSocket handshake (the fault upstream speaks no WebSocket): what reached it is recorded. */
const refusesWs = () => act.json(403, { error: { message: 'no realtime here', type: 'invalid_request_error' } });
const ws = (h: ChainHarness, path: string, headers: Record<string, string> = auth) => openWs(`${h.url.replace('http://', 'ws://')}${path}`, { headers });
const queryModels = (path: string): string[] => new URLSearchParams(path.slice(path.indexOf('?') + 1)).getAll('model');

describe('WebSocket routing and the client gate', () => {
  it('attack: a WebSocket with ?model= twice is checked against the first and forwarded with both: a client held to one model names another', async () => {
    // websocket-request.ts modelFromUrl reads URLSearchParams.get (the first value) for routing and the
    // allow-list, and the upstream handshake carries the query as the client wrote it. A server that
    // reads the last value of a repeated parameter (Starlette's query_params, Rails, PHP) opens the
    // session on the model the client is not allowed: the allow-list is no limit on WebSockets.
    const h = await chain([{ name: 'openai', script: refusesWs, keys: 1 }], { clients: [{ name: 'cheap', token, models: ['gpt-4o-mini-realtime*'] }] });
    const o = await ws(h, '/v1/realtime?model=gpt-4o-mini-realtime-preview&model=gpt-4o-realtime-preview');
    if (o.kind === 'open') o.ws.terminate();
    const sent = h.up.openai!.requests.map((q) => queryModels(q.path));
    // Either refused before any key is used, or the upstream sees only the model that was checked.
    for (const models of sent) expect(models).toEqual(['gpt-4o-mini-realtime-preview']);
  });

  it('attack: clients[].rpm does not hold on WebSockets: a client at its per-minute limit opens handshakes with pool keys', async () => {
    // ws-auth.ts identifies the client and checks allow-lists, but nothing calls ClientGate.admit for an
    // upgrade: rpm (and maxConcurrent, below) are HTTP-only, so a client past its limit keeps spending
    // pool keys (and upstream quota) through /v1/realtime.
    const h = await chain([{ name: 'openai', script: refusesWs, keys: 1 }], { clients: [{ name: 'slow', token, rpm: 1 }] });
    expect((await h.call('/v1/chat/completions', undefined, { headers: auth })).status).not.toBe(429);
    const before = h.up.openai!.requests.length;
    const o = await ws(h, '/v1/realtime?model=gpt-4o-realtime-preview');
    if (o.kind === 'open') o.ws.terminate();
    expect(o.kind === 'refused' ? o.status : 101).toBe(429);
    expect(h.up.openai!.requests.length).toBe(before);
  });

  it('attack: clients[].maxConcurrent does not hold on WebSockets: a second handshake goes upstream while the first is in flight', async () => {
    // The same gap: a client with maxConcurrent 1 has a handshake waiting on the upstream; its second
    // handshake is not refused but given another pool key.
    // The first handshake stalls upstream (held until keypool closes); any later one is refused 403.
    const h = await chain([{ name: 'openai', script: (_r, attempt) => (attempt === 0 ? act.stallBeforeHeaders() : refusesWs()), keys: 2 }], {
      clients: [{ name: 'one', token, maxConcurrent: 1 }],
    });
    const first = ws(h, '/v1/realtime?model=gpt-4o-realtime-preview');
    first.then((o) => o.kind === 'open' && o.ws.terminate()).catch(() => undefined);
    await waitFor(() => h.up.openai!.requests.length === 1);
    const second = await ws(h, '/v1/realtime?model=gpt-4o-realtime-preview');
    if (second.kind === 'open') second.ws.terminate();
    expect(second.kind === 'refused' ? second.status : 101).toBe(429);
    expect(h.up.openai!.requests).toHaveLength(1);
  });
});

describe('GET /models on a shared prefix', () => {
  it('attack: a client held to some models is shown every model of the members it may use', async () => {
    // serve-request.ts filters the members by the client's upstreams allow-list only (allowed(name,
    // undefined)); the merged list is not filtered by clients[].models. The client is told of models it
    // gets 403 for, the same leak the upstreams filter was added to stop.
    const h = await chain(
      [
        { name: 'openai', script: lists('openai', ['gpt-4o', 'gpt-4o-mini']), config: { models: ['gpt-*'] } },
        { name: 'groq', script: lists('groq', ['llama-3.3-70b']), config: { prefix: '/v1' } },
      ],
      { clients: [{ name: 'cheap', token, models: ['gpt-4o-mini'] }] },
    );
    const r = await h.call('/v1/models', undefined, { method: 'GET', headers: auth });
    expect(r.status).toBe(200);
    expect((JSON.parse(r.text) as { data: { id: string }[] }).data.map((m) => m.id)).toEqual(['gpt-4o-mini']);
  });

  it('attack: HEAD /v1/models on a shared prefix whose members all list models is refused 404 while GET answers 200', async () => {
    // modelsPath is asked only for GET; a HEAD has no body and no model, no member lists '', so the
    // client is told keypool_model_not_served. RFC 9110 §9.3.2: HEAD is GET without the content; a
    // health check (or SDK probe) doing HEAD /v1/models sees the prefix as broken.
    const h = await chain([
      { name: 'openai', script: lists('openai', ['gpt-4o']), config: { models: ['gpt-*'] } },
      { name: 'groq', script: lists('groq', ['llama-3.3-70b']), config: { prefix: '/v1', models: ['llama-*'] } },
    ]);
    expect((await h.call('/v1/models', undefined, { method: 'GET' })).status).toBe(200);
    const head = await h.call('/v1/models', undefined, { method: 'HEAD' });
    expect(head.status).toBe(200);
  });
});

describe('chains', () => {
  it('attack: a fallback step naming the request’s own upstream and model sends the same request to the same pool again', async () => {
    // chain-checks.ts refuses a step on the upstream itself only when its model equals the chain's own
    // (undefined for `fallbacks`): `fallbacks: [{ upstream: openai, model: gpt-4o-mini }]` passes, and a
    // request for gpt-4o-mini walks openai twice: one key answering 503 with maxRetries 0 is sent the
    // request twice (1 + 1 where the README's N + maxRetries gives 1), for nothing the pool did not try.
    const h = await chain([{ name: 'openai', script: down, keys: 1, config: { fallbacks: [{ upstream: 'openai', model: 'gpt-4o-mini' }] } }], { retry: { maxRetries: 0 } });
    const r = await h.call('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] });
    expect(r.status).toBe(503);
    expect(h.up.openai!.requests).toHaveLength(1);
  });
});
