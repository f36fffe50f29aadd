// health.probeIntervalMs in the running proxy: a key the upstream refused is probed over HTTP on the
// app's clock and serves again once the upstream accepts it; off by default.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfigObject } from '../../src/config/load.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { createLogger } from '../../src/logger.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { waitFor } from '../helpers/wait.js';

const BAD = 'sk-app-probe-bad-aaaaaaaaaaaaa1';
const GOOD = 'sk-app-probe-good-aaaaaaaaaaaa2';

let app: FastifyInstance | undefined;
let upstream: FakeUpstream | undefined;
afterEach(async () => {
  await app?.close();
  await upstream?.close();
  app = undefined;
  upstream = undefined;
});

async function start(health: Record<string, unknown> | undefined, clock: FakeClock) {
  upstream = await startFakeUpstream({ keys: { [BAD]: { kind: 'unauthorized' } } });
  const { config } = loadConfigObject(
    { upstreams: [{ name: 'u', baseUrl: `${upstream.url}/v1`, keys: [{ name: 'bad', key: BAD }, { name: 'good', key: GOOD }] }], ...(health ? { health } : {}) },
    {},
  );
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  app = await buildApp({ config, logger: createLogger('debug', sink), clock });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  const url = typeof addr === 'object' && addr !== null ? `http://127.0.0.1:${addr.port}` : '';
  const pool = app.pools.get('u');
  if (pool === undefined) throw new Error('no pool');
  return { url, pool, logs, up: upstream };
}

describe('health probes in the proxy', () => {
  it('bring a refused key back when the upstream accepts it again', async () => {
    const clock = new FakeClock();
    const { url, pool, logs, up } = await start({ probeIntervalMs: 5000 }, clock);
    const res = await request(`${url}/v1/models`);
    await res.body.dump();
    expect(res.headers['x-keypool-key']).toBe('good');
    const bad = pool.states()[0];
    expect(bad?.disabled).toBe('unauthorized');

    // Still refused: the probe leaves it disabled.
    clock.advance(5000);
    await waitFor(() => up.requests.filter((r) => r.key === BAD).length === 2);
    expect(bad?.disabled).toBe('unauthorized');

    up.setDefault(BAD, { kind: 'ok' });
    await waitFor(() => logs.some((l) => l.includes('"msg":"health probe: still refused"')));
    clock.advance(5000);
    await waitFor(() => bad?.disabled === undefined);
    expect(up.requests.filter((r) => r.key === BAD).map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/models', 'GET /v1/models', 'GET /v1/models']);
    expect(pool.usable).toBe(2);
    expect(logs.join('\n')).toContain('key enabled again');
    for (const secret of [BAD, GOOD]) expect(logs.join('\n')).not.toContain(secret);
  });

  it('are off by default', async () => {
    const clock = new FakeClock();
    const { url, pool, up } = await start(undefined, clock);
    const res = await request(`${url}/v1/models`);
    await res.body.dump();
    up.setDefault(BAD, { kind: 'ok' });
    clock.advance(3_600_000);
    await new Promise((r) => setTimeout(r, 20));
    expect(pool.states()[0]?.disabled).toBe('unauthorized');
    expect(up.requests.filter((r) => r.key === BAD)).toHaveLength(1);
  });

  it('refuse an interval that would hammer the upstream', () => {
    expect(() => loadConfigObject({ upstreams: [{ name: 'u', baseUrl: 'http://127.0.0.1:9/v1', keys: ['k'] }], health: { probeIntervalMs: 50 } }, {})).toThrow(
      'health.probeIntervalMs: 0 (off) or at least 1000',
    );
  });
});
