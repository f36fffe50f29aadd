// Several fault upstreams, each its own keypool upstream with its own keys, and keypool in front of them
// with whatever chains, circuits and routing the test configures. A client that records everything it
// is shown, and a secret search over that and the log at the end.
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Agent, request } from 'undici';
import { expect } from 'vitest';
import { buildApp } from '../../src/app.js';
import type { Clock } from '../../src/clock.js';
import { loadConfigObject } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import type { StateStore } from '../../src/state/store.js';
import { startFaultUpstream, type FaultUpstream, type Script } from './fault-upstream.js';
import type { Reply } from './fault-harness.js';

export interface UpstreamSpec {
  readonly name: string;
  readonly script: Script;
  /** How many keys (named `<name>-<i>`, secrets unique per upstream). @default 2 */
  readonly keys?: number;
  /** Everything else of the upstream's config (prefix, fallbacks, circuit, models...). */
  readonly config?: Record<string, unknown>;
}

export interface ChainHarness {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly up: Record<string, FaultUpstream>;
  /** Every pool key, by upstream. */
  readonly secrets: Record<string, string[]>;
  readonly logs: string[];
  /** The request log lines, parsed. */
  requestLines(): Record<string, unknown>[];
  call(path?: string, body?: unknown, o?: { method?: string; headers?: Record<string, string> }): Promise<Reply>;
  /** No pool key in anything a client was shown or keypool logged; then closes everything. */
  close(): Promise<void>;
}

export const secretOf = (upstream: string, i: number): string => `sk-${upstream}-pool-secret-${i}-${'x'.repeat(20)}`;

export interface ChainOptions {
  readonly retry?: Record<string, unknown>;
  readonly cooldown?: Record<string, unknown>;
  readonly queue?: Record<string, unknown>;
  readonly clients?: unknown[];
  readonly clock?: Clock;
  readonly store?: StateStore;
}

export async function chainHarness(specs: readonly UpstreamSpec[], o: ChainOptions = {}): Promise<ChainHarness> {
  const up: Record<string, FaultUpstream> = {};
  const secrets: Record<string, string[]> = {};
  for (const s of specs) up[s.name] = await startFaultUpstream(s.script);
  const upstreams = specs.map((s, i) => {
    secrets[s.name] = Array.from({ length: s.keys ?? 2 }, (_, k) => secretOf(s.name, k));
    return { name: s.name, baseUrl: `${up[s.name]!.url}/v1`, prefix: i === 0 ? '/v1' : `/${s.name}`, keys: secrets[s.name], ...s.config };
  });
  const { config } = loadConfigObject(
    {
      server: { port: 0 },
      log: { level: 'debug' },
      upstreams,
      retry: { maxRetries: 2, backoffBaseMs: 1, backoffMaxMs: 2, headersTimeoutMs: 5_000, streamHeadersTimeoutMs: 5_000, idleTimeoutMs: 5_000, ...o.retry },
      cooldown: o.cooldown ?? {},
      queue: o.queue ?? {},
      ...(o.clients === undefined ? {} : { clients: o.clients }),
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
  const app = await buildApp({ config, logger: createLogger('debug', sink), clock: o.clock, random: () => 0.5, store: o.store });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  const url = `http://127.0.0.1:${addr.port}`;
  const agent = new Agent();
  const seen: string[] = [];
  const call: ChainHarness['call'] = async (path = '/v1/chat/completions', body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }, co = {}) => {
    const method = co.method ?? 'POST';
    const res = await request(`${url}${path}`, {
      dispatcher: agent,
      method: method as 'POST',
      headers: { authorization: 'Bearer sk-agent-placeholder', ...(method === 'POST' ? { 'content-type': 'application/json' } : {}), ...co.headers },
      body: method === 'POST' ? (typeof body === 'string' ? body : JSON.stringify(body)) : undefined,
    });
    let text = '';
    let bodyError: string | undefined;
    try {
      for await (const chunk of res.body) text += String(chunk);
    } catch (err) {
      bodyError = (err as { code?: string }).code ?? String(err);
    }
    seen.push(`${res.statusCode} ${JSON.stringify(res.headers)} ${text}`);
    return { status: res.statusCode, headers: res.headers, text, bodyError };
  };
  return {
    url,
    app,
    up,
    secrets,
    logs,
    requestLines: () => logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request'),
    call,
    async close() {
      try {
        const all = Object.values(secrets).flat();
        for (const text of [...seen, ...logs]) for (const s of all) expect(text.includes(s), `a pool key in ${text.slice(0, 200)}`).toBe(false);
      } finally {
        await agent.destroy();
        await app.close();
        for (const u of Object.values(up)) await u.close();
      }
    },
  };
}

/** The upstreams' answers tests use. */
export const completion = (model: string, from: string) => ({ id: `chatcmpl-${from}`, object: 'chat.completion', model, choices: [{ index: 0, message: { role: 'assistant', content: `from ${from}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
