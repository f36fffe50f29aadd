// keypool with the admin surface for a test: on a loopback port, logs captured, an optional admin
// token (the config schema may not have `admin:` yet, so it is added to the loaded config).
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import type { Clock } from '../../src/clock.js';
import { loadConfigObject, type Config } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { createLogger } from '../../src/logger.js';

export interface AdminProxy {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly config: Config;
  readonly logs: string[];
  close(): Promise<void>;
}

export interface AdminProxyOptions {
  readonly upstreams: ConfigInput['upstreams'];
  readonly adminToken?: string;
  readonly clock?: Clock;
  readonly host?: string;
  readonly retry?: ConfigInput['retry'];
  readonly cooldown?: ConfigInput['cooldown'];
  readonly queue?: ConfigInput['queue'];
}

export async function startAdminProxy(o: AdminProxyOptions): Promise<AdminProxy> {
  const { config: loaded } = loadConfigObject({ log: { level: 'debug' }, upstreams: o.upstreams, retry: o.retry ?? {}, cooldown: o.cooldown ?? {}, queue: o.queue ?? {} }, {});
  // The token goes in as text: the admin guard takes text or a token object (what a loader may make of it).
  const config = (o.adminToken === undefined ? loaded : { ...loaded, admin: { token: o.adminToken } }) as Config;
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      cb();
    },
  });
  const app = await buildApp({ config, logger: createLogger('debug', sink), clock: o.clock, random: () => 0.5 });
  const host = o.host ?? '127.0.0.1';
  await app.listen({ port: 0, host });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
  return { url, app, config, logs, close: () => app.close() };
}

export interface Got {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** One request; every answer is kept in `captured` (when given) for the secret search. */
export async function get(url: string, init: Parameters<typeof request>[1] = {}, captured?: string[]): Promise<Got> {
  const res = await request(url, init);
  const text = await res.body.text();
  captured?.push(String(res.statusCode), JSON.stringify(res.headers), text);
  return { status: res.statusCode, headers: res.headers, text };
}

export function json<T = Record<string, unknown>>(g: Got): T {
  return JSON.parse(g.text) as T;
}

export const chatBody = (model = 'gpt-4o', extra: Record<string, unknown> = {}): string => JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });
