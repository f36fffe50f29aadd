// Replication between two apps in one process through the reference memory store.
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadConfigObject } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { scopeOf } from '../../src/keys/key-state.js';
import { MemoryHub } from '../../src/state/memory-store.js';
import { FakeClock } from '../helpers/fake-clock.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function replica(hub: MemoryHub, clock: FakeClock) {
  const { config } = loadConfigObject(
    { upstreams: [{ name: 'openai', baseUrl: 'http://127.0.0.1:9/v1', keys: ['sk-repl-aaaaaaaaaaaa1', 'sk-repl-bbbbbbbbbbbb2'] }] },
    {},
  );
  const app = await buildApp({ config, logger: createLogger('silent'), clock, store: hub.client() });
  await app.ready();
  closers.push(() => app.close());
  return app.pools.get('openai')!;
}

describe('Replication', () => {
  it('a cooldown or disable in one replica reaches the other; a late replica loads them at start', async () => {
    const clock = new FakeClock();
    const hub = new MemoryHub(() => clock.now());
    const a = await replica(hub, clock);
    const b = await replica(hub, clock);
    const [a1, a2] = a.states();
    a.cool(a1!, 'gpt-4o', clock.now() + 30_000, 'rate_limited', clock.now());
    a.disable(a2!, 'unauthorized', 1e15);
    await new Promise((r) => setImmediate(r));
    expect(b.states()[0]!.scopes.get('gpt-4o')!.cooldownUntil).toBe(clock.now() + 30_000);
    expect(b.states()[1]!.disabled).toBe('unauthorized');
    expect(b.usable).toBe(1);
    // Applied facts are not echoed back as news.
    expect(b.states()[0]!.stats.rateLimited).toBe(0);
    // The streak travels with the cooldown: the next 429 at b backs off as the second in a row.
    expect(b.streakOf(b.states()[0]!, 'gpt-4o')).toBe(1);
    clock.advance(30_001);
    a.cool(a1!, 'gpt-4o', clock.now() + 60_000, 'rate_limited', clock.now());
    await new Promise((r) => setImmediate(r));
    expect(b.streakOf(b.states()[0]!, 'gpt-4o')).toBe(2);
    expect(b.states()[0]!.scopes.get('gpt-4o')!.cooldownUntil).toBe(clock.now() + 60_000);

    const c = await replica(hub, clock);
    expect(c.states()[0]!.scopes.get('gpt-4o')!.cooldownUntil).toBe(clock.now() + 60_000);
    expect(c.usable).toBe(1);
  });

  it("a slot freed on another replica lifts this replica's hold on the full key", async () => {
    const clock = new FakeClock();
    const hub = new MemoryHub(() => clock.now());
    const b = await replica(hub, clock);
    const s = b.states()[0]!;
    // b was refused the key: all its slots were taken elsewhere.
    const hold = scopeOf(s.scopes, '');
    hold.heldUntil = clock.now() + 250;
    hold.heldFor = 'slots';
    const other = hub.client();
    const req = { upstream: 'openai', fingerprint: s.key.fingerprint, model: '', tokens: 1, limits: { maxConcurrent: 1 }, now: clock.now() };
    const held = other.take(req);
    expect(await held.answer).toMatchObject({ ok: true });
    held.release(undefined);
    expect(hold.heldUntil).toBe(0);
  });
});
