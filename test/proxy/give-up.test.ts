// What a failed attempt says about the upstream: keypool's own dispatcher failing is not the upstream's fault.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { describe, expect, it } from 'vitest';
import { isLocalDispatchFailure } from '../../src/proxy/give-up.js';

describe('isLocalDispatchFailure', () => {
  it('a request handed to a closed or destroyed agent fails locally; a refused connection does not', async () => {
    const server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const closed = new Agent();
      await closed.close();
      const destroyed = new Agent();
      await destroyed.destroy();
      const errorOf = (a: Agent, o = origin) => a.request({ origin: o, path: '/', method: 'GET' }).then(() => undefined, (e: unknown) => e);
      expect(isLocalDispatchFailure(await errorOf(closed))).toBe(true);
      expect(isLocalDispatchFailure(await errorOf(destroyed))).toBe(true);
      const live = new Agent();
      // Port 9 (discard) is closed on loopback: ECONNREFUSED, the upstream's side.
      const refused = await errorOf(live, 'http://127.0.0.1:9');
      expect(refused).toBeInstanceOf(Error);
      expect(isLocalDispatchFailure(refused)).toBe(false);
      await live.close();
    } finally {
      server.close();
    }
  });
});
