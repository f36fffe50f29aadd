// WebSocket upgrades on a prefix several upstreams share: the handshake goes to the member that serves
// the model its query names (`?model=`, as the Realtime API does), with that member's key and nobody
// else's; without a model, to the prefix's default member; a model no member serves is refused before
// any handshake goes out, in the prefix's error shape; a client's allow-list is checked against the
// member chosen, as on HTTP.
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadConfigObject } from '../../src/config/load.js';
import { startWsFakeUpstream, type WsFakeUpstream } from '../../src/fake-upstream/ws-server.js';
import { createLogger } from '../../src/logger.js';
import { mustOpen, mustRefuse, openWs } from './websocket-helpers.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'kp-ws-routing-client-token-0123456789';
const keyOf = (name: string): string => `sk-${name}-ws-routing-secret-${'q'.repeat(16)}`;

interface Member {
  readonly name: string;
  /** Model globs the member lists; absent: it takes the rest. */
  readonly models?: readonly string[];
  readonly errorFormat?: string;
  /** @default '/v1' */
  readonly prefix?: string;
  /** The path on the fake the prefix maps to. @default '/v1' */
  readonly basePath?: string;
}

interface Shared {
  readonly ws: string;
  readonly app: FastifyInstance;
  readonly up: Record<string, WsFakeUpstream>;
  readonly logs: string[];
  /** The 'websocket' log lines, parsed. */
  lines(): Record<string, unknown>[];
}

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

/** keypool with every member on its prefix (/v1 unless told), each its own WebSocket fake upstream and one key of its own. */
async function shared(members: readonly Member[], clients?: unknown[]): Promise<Shared> {
  const up: Record<string, WsFakeUpstream> = {};
  for (const m of members) {
    const u = await startWsFakeUpstream();
    closers.push(() => u.close());
    up[m.name] = u;
  }
  const { config } = loadConfigObject(
    {
      server: { port: 0 },
      log: { level: 'debug' },
      upstreams: members.map((m) => ({
        name: m.name,
        prefix: m.prefix ?? '/v1',
        baseUrl: `${up[m.name]!.url}${m.basePath ?? '/v1'}`,
        keys: [keyOf(m.name)],
        ...(m.models === undefined ? {} : { models: m.models }),
        ...(m.errorFormat === undefined ? {} : { errorFormat: m.errorFormat }),
      })),
      retry: { maxRetries: 0 },
      ...(clients === undefined ? {} : { clients }),
    },
    {},
  );
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      cb();
    },
  });
  const app = await buildApp({ config, logger: createLogger('debug', sink), random: () => 0.5 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(async () => {
    // No pool key nor client token in anything keypool logged.
    for (const l of logs) for (const secret of [TOKEN, ...members.map((m) => keyOf(m.name))]) expect(l.includes(secret)).toBe(false);
    await app.close();
  });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  return {
    ws: `ws://127.0.0.1:${addr.port}`,
    app,
    up,
    logs,
    lines: () => logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'websocket'),
  };
}

const GROQ_OPENAI: readonly Member[] = [
  { name: 'groq', models: ['llama-*'] },
  { name: 'openai', models: ['gpt-*'] },
];
const auth = { authorization: `Bearer ${TOKEN}` };

/** Opens a session, checks who got the handshake, closes it and waits for its log line. */
async function servedBy(h: Shared, path: string, headers: Record<string, string> = {}, basePath = '/v1'): Promise<string> {
  const c = mustOpen(await openWs(`${h.ws}${path}`, { headers }));
  const served = Object.entries(h.up).filter(([, u]) => u.handshakes.length > 0).map(([name]) => name);
  expect(served).toHaveLength(1);
  const name = served[0]!;
  // The member's own key, in its own handshake; nobody else was asked.
  expect(h.up[name]!.handshakes.map((hs) => hs.key)).toEqual([keyOf(name)]);
  // The prefix is replaced by the member's base path, the query kept.
  expect(h.up[name]!.handshakes[0]!.path).toBe(path.replace(/^\/[^/]+/, basePath));
  expect(c.headers['x-keypool-key']).toBe(`${name}-1`);
  expect(h.app.websockets.sessions().map((s) => s.upstream)).toEqual([name]);
  const before = h.lines().length;
  c.ws.close();
  await c.closed;
  await waitFor(() => h.lines().length > before);
  expect(h.lines().at(-1)).toMatchObject({ status: 101, upstream: name });
  return name;
}

function nothingSent(h: Shared): void {
  for (const u of Object.values(h.up)) expect(u.handshakes).toHaveLength(0);
  for (const pool of h.app.pools.values()) expect(pool.states().every((s) => s.stats.attempts === 0 && s.inflight === 0)).toBe(true);
}

describe('WebSocket routing on a shared prefix', () => {
  it('the member serving ?model= gets the handshake with its own key; the other member gets none', async () => {
    const h = await shared(GROQ_OPENAI);
    expect(await servedBy(h, '/v1/realtime?model=gpt-4o-realtime-preview')).toBe('openai');
  });

  it('the routed member’s own base path is used, not the default member’s', async () => {
    // Groq serves OpenAI's API under /openai/v1.
    const h = await shared([{ name: 'openai', models: ['gpt-*'] }, { name: 'groq', models: ['llama-*'], basePath: '/openai/v1' }]);
    expect(await servedBy(h, '/v1/realtime?model=llama-3.3-70b', {}, '/openai/v1')).toBe('groq');
  });

  it('the first member listing the model wins, whatever its place on the prefix', async () => {
    const h = await shared(GROQ_OPENAI);
    expect(await servedBy(h, '/v1/realtime?model=llama-3.3-70b')).toBe('groq');
  });

  it('a model only the member listing none serves goes to that member', async () => {
    const h = await shared([{ name: 'openai', models: ['gpt-*'] }, { name: 'groq' }]);
    expect(await servedBy(h, '/v1/realtime?model=whisper-live')).toBe('groq');
  });

  it('without a model in the query, the prefix’s default member serves (the one listing none)', async () => {
    const h = await shared([{ name: 'openai', models: ['gpt-*'] }, { name: 'groq' }]);
    expect(await servedBy(h, '/v1/responses')).toBe('groq');
  });

  it('without a model in the query and every member listing models, the first member serves', async () => {
    const h = await shared(GROQ_OPENAI);
    expect(await servedBy(h, '/v1/responses')).toBe('groq');
  });

  it('a model no member serves is refused with keypool_model_not_served before any handshake goes out', async () => {
    const h = await shared(GROQ_OPENAI);
    const r = mustRefuse(await openWs(`${h.ws}/v1/realtime?model=mistral-large`));
    expect(r.status).toBe(404);
    expect(r.headers.connection).toBe('close');
    expect(JSON.parse(r.body).error.code).toBe('keypool_model_not_served');
    expect(r.headers['x-keypool-request-id']).toBeDefined();
    nothingSent(h);
    await waitFor(() => h.lines().length > 0);
    expect(h.lines()[0]).toMatchObject({ status: 404, error: 'keypool_model_not_served', model: 'mistral-large' });
  });

  it('the refusal speaks the prefix’s error shape (Anthropic’s here), as HTTP does', async () => {
    const h = await shared([
      { name: 'groq', models: ['llama-*'], errorFormat: 'anthropic' },
      { name: 'openai', models: ['gpt-*'], errorFormat: 'anthropic' },
    ]);
    const r = mustRefuse(await openWs(`${h.ws}/v1/realtime?model=mistral-large`));
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body)).toMatchObject({ type: 'error', error: { type: 'not_found_error', code: 'keypool_model_not_served' } });
    nothingSent(h);
  });

  it('a client allowed only one member is refused the other’s model, before anything is sent', async () => {
    const h = await shared(GROQ_OPENAI, [{ name: 'agent', token: TOKEN, upstreams: ['openai'] }]);
    const r = mustRefuse(await openWs(`${h.ws}/v1/realtime?model=llama-3.3-70b`, { headers: auth }));
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).error.code).toBe('keypool_client_forbidden');
    nothingSent(h);
    // The member it is allowed still serves it.
    expect(await servedBy(h, '/v1/realtime?model=gpt-4o-realtime-preview', auth)).toBe('openai');
  });

  it('a client not allowed the default member is refused a session without a model', async () => {
    const h = await shared(GROQ_OPENAI, [{ name: 'agent', token: TOKEN, upstreams: ['openai'] }]);
    const r = mustRefuse(await openWs(`${h.ws}/v1/responses`, { headers: auth }));
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).error.code).toBe('keypool_client_forbidden');
    nothingSent(h);
  });

  it('a client’s model allow-list applies to the model in the query', async () => {
    const h = await shared(GROQ_OPENAI, [{ name: 'agent', token: TOKEN, models: ['gpt-4o-mini*'] }]);
    const r = mustRefuse(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).error.code).toBe('keypool_client_forbidden');
    nothingSent(h);
    expect(await servedBy(h, '/v1/realtime?model=gpt-4o-mini-realtime-preview', auth)).toBe('openai');
  });

  it('a client allowed an upstream on its own prefix is refused another prefix’s upstream', async () => {
    // One upstream per prefix: the allow-list holds there too (a WebSocket is no way around it).
    const h = await shared([{ name: 'openai' }, { name: 'azure', prefix: '/azure' }], [{ name: 'agent', token: TOKEN, upstreams: ['azure'] }]);
    const r = mustRefuse(await openWs(`${h.ws}/v1/responses`, { headers: auth }));
    expect(r.status).toBe(403);
    nothingSent(h);
    expect(await servedBy(h, '/azure/responses', auth)).toBe('azure');
  });
});

describe('a client’s limits on WebSocket sessions', () => {
  it('maxConcurrent: an open session is a request in flight; a second is refused 429 with nothing sent, and admitted once the first ends', async () => {
    const h = await shared([{ name: 'openai' }], [{ name: 'agent', token: TOKEN, maxConcurrent: 1 }]);
    const first = mustOpen(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    const second = mustRefuse(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    expect(second.status).toBe(429);
    expect(JSON.parse(second.body).error.code).toBe('keypool_client_limit');
    expect(h.up.openai!.handshakes).toHaveLength(1);
    // HTTP counts against the same limit while the session is open.
    const http = await fetch(`${h.ws.replace('ws://', 'http://')}/v1/models`, { headers: auth });
    expect(http.status).toBe(429);
    first.ws.close();
    await first.closed;
    await waitFor(() => h.app.websockets.sessions().length === 0);
    const third = mustOpen(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    third.ws.close();
    await third.closed;
  });

  it('rpm: each handshake counts one request; past it the upgrade is refused 429 with Retry-After', async () => {
    const h = await shared([{ name: 'openai' }], [{ name: 'agent', token: TOKEN, rpm: 1 }]);
    const first = mustOpen(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    first.ws.close();
    await first.closed;
    const second = mustRefuse(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    expect(second.status).toBe(429);
    expect(Number(second.headers['retry-after'])).toBeGreaterThan(0);
    expect(h.up.openai!.handshakes).toHaveLength(1);
  });

  it('a refused handshake (no key can serve) releases its slot: the client is not left at its limit', async () => {
    const h = await shared([{ name: 'openai' }], [{ name: 'agent', token: TOKEN, maxConcurrent: 1 }]);
    // The only key answers the handshake 500: the client gets an error, and its slot is free again.
    h.up.openai!.script(keyOf('openai'), { kind: 'server_error' });
    const a = mustRefuse(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    expect(a.status).toBeGreaterThanOrEqual(500);
    const b = mustOpen(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    b.ws.close();
    await b.closed;
  });
});

describe('WebSocket sessions in metrics and the admin view', () => {
  it('an open session counts as a request (101) for its upstream and client; a refused handshake with its status', async () => {
    const h = await shared([{ name: 'openai' }], [{ name: 'agent', token: TOKEN, models: ['gpt-4o-realtime*'] }]);
    const c = mustOpen(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: auth }));
    c.ws.close();
    await c.closed;
    expect(mustRefuse(await openWs(`${h.ws}/v1/realtime?model=o3`, { headers: auth })).status).toBe(403);
    // Refused before routing (no token): logged, not a labelled series.
    expect(mustRefuse(await openWs(`${h.ws}/v1/realtime?model=gpt-4o-realtime-preview`)).status).toBe(401);
    await waitFor(() => h.lines().length >= 3);
    const metrics = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
    const samples = metrics.split('\n').filter((l) => l.startsWith('keypool_requests_total{'));
    expect(samples.some((l) => l.includes('upstream="openai"') && l.includes('client="agent"') && l.includes('status="101"') && l.endsWith(' 1'))).toBe(true);
    expect(samples.some((l) => l.includes('status="403"') && l.endsWith(' 1'))).toBe(true);
    expect(samples.some((l) => l.includes('status="401"'))).toBe(false);
    const clients = JSON.parse((await h.app.inject({ method: 'GET', url: '/admin/clients' })).body) as { clients: { name: string; requests: number }[] };
    expect(clients.clients.find((r) => r.name === 'agent')?.requests).toBe(2);
  });
});
