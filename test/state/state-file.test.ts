import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Key } from '../../src/keys/key.js';
import { KeyPool } from '../../src/keys/pool.js';
import { createLogger } from '../../src/logger.js';
import { StateFile } from '../../src/state/state-file.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { waitFor } from '../helpers/wait.js';

const SECRETS = ['sk-state-secret-aaaaaaaaaaaa1', 'sk-state-secret-bbbbbbbbbbbb2'];
const keys = (secrets = SECRETS) => secrets.map((s, i) => new Key(`k${i + 1}`, s));

function setup(secrets = SECRETS, file = join(mkdtempSync(join(tmpdir(), 'kp-state-')), 'state.json')) {
  const clock = new FakeClock(1_000_000);
  const lines: string[] = [];
  const logger = createLogger('info', new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
  const pool = new KeyPool('openai', keys(secrets));
  const open = () => StateFile.open({ file, pools: new Map([['openai', pool]]), clock, logger, flushDelayMs: 500 });
  return { clock, pool, file, lines, open };
}

describe('StateFile', () => {
  it('keeps cooldowns, disabled keys, streaks and counters across a restart, without secrets', async () => {
    const a = setup();
    const state = a.open();
    const [k1, k2] = a.pool.states();
    a.pool.cool(k1!, 'gpt-4o', a.clock.now() + 60_000, 'rate_limited', a.clock.now());
    a.pool.cool(k1!, '', a.clock.now() + 3_600_000, 'out_of_credit', a.clock.now());
    a.pool.disable(k2!, 'unauthorized', 1e15);
    k1!.stats.successes = 7;
    await state.close();
    const text = readFileSync(a.file, 'utf8');
    for (const s of SECRETS) expect(text).not.toContain(s);
    expect(readdirSync(join(a.file, '..')).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    const b = setup(SECRETS, a.file);
    b.clock.advance(10_000);
    b.open();
    const [n1, n2] = b.pool.states();
    expect(n1!.scopes.get('gpt-4o')!.cooldownUntil).toBe(1_060_000);
    expect(n1!.scopes.get('gpt-4o')!.streak).toBe(1);
    expect(n1!.creditUntil).toBe(1_000_000 + 3_600_000);
    expect(n1!.stats.successes).toBe(7);
    expect(n2!.disabled).toBe('unauthorized');
    expect(b.pool.usable).toBe(1);
    expect(b.lines.join('')).toContain('pool state restored');
  });

  it('drops keys removed from config and cooldowns that expired while it was down', async () => {
    const a = setup();
    const state = a.open();
    const [k1, k2] = a.pool.states();
    a.pool.cool(k1!, '', a.clock.now() + 5_000, 'rate_limited', a.clock.now());
    a.pool.cool(k2!, '', a.clock.now() + 60_000, 'rate_limited', a.clock.now());
    await state.close();

    const b = setup([SECRETS[0]!], a.file);
    b.clock.advance(6_000);
    const s2 = b.open();
    expect(b.pool.states()[0]!.scopes.get('')?.cooldownUntil ?? 0).toBe(0);
    b.pool.cool(b.pool.states()[0]!, 'm', b.clock.now() + 1000, 'rate_limited', b.clock.now());
    await s2.close();
    const saved = JSON.parse(readFileSync(a.file, 'utf8')) as { upstreams: { openai: { keys: Record<string, { name: string }> } } };
    expect(Object.values(saved.upstreams.openai.keys).map((k) => k.name)).toEqual(['k1']);
  });

  it('a corrupt file is kept aside with a warning, and keypool starts clean', async () => {
    const a = setup();
    writeFileSync(a.file, '{"version": 1, "upstreams": {"openai": {"keys": 42}}');
    const state = a.open();
    expect(a.lines.join('')).toContain('state file is corrupt');
    const copies = readdirSync(join(a.file, '..')).filter((f) => f.includes('.corrupt-'));
    expect(copies).toHaveLength(1);
    expect(a.pool.states().every((s) => s.disabled === undefined)).toBe(true);
    a.pool.disable(a.pool.states()[0]!, 'forbidden', 1e15);
    await state.close();
    expect(JSON.parse(readFileSync(a.file, 'utf8')).version).toBe(1);
  });

  it('writes are debounced: at most one per flushDelayMs', async () => {
    const a = setup();
    const state = a.open();
    a.pool.cool(a.pool.states()[0]!, '', a.clock.now() + 60_000, 'rate_limited', a.clock.now());
    a.pool.acquire({ demand: { model: '', tokens: 0 }, now: a.clock.now() })?.end();
    expect(existsSync(a.file)).toBe(false);
    a.clock.advance(499);
    await new Promise((r) => setImmediate(r));
    expect(existsSync(a.file)).toBe(false);
    a.clock.advance(1);
    await state.flush();
    expect(existsSync(a.file)).toBe(true);
    await state.close();
  });

  it('an unwritable location warns and keeps serving', async () => {
    const a = setup(SECRETS, '/nonexistent-dir/keypool/state.json');
    const state = a.open();
    a.pool.disable(a.pool.states()[0]!, 'forbidden', 1e15);
    await state.close();
    expect(a.lines.join('')).toContain('could not save pool state');
  });

  it('a change waits for the pending write or the next period, never a timer of its own', async () => {
    const a = setup();
    const state = a.open();
    const [k1, k2] = a.pool.states();
    const saved = (): string => (existsSync(a.file) ? readFileSync(a.file, 'utf8') : '');
    // A cooldown is saved with the attempt's end that follows it.
    const cool = (s: typeof k1, model: string): void => {
      a.pool.cool(s!, model, a.clock.now() + 60_000, 'rate_limited', a.clock.now());
      a.pool.acquire({ demand: { model: '', tokens: 0 }, now: a.clock.now() })?.end();
    };
    cool(k1, 'm1');
    a.clock.advance(300);
    cool(k2, 'm2');
    a.clock.advance(200);
    await waitFor(() => saved().includes('m2'));
    a.clock.advance(100);
    a.pool.disable(k1!, 'forbidden', 1e15);
    // 800 ms: 500 after the second change, but only 200 after the third: not written yet.
    a.clock.advance(200);
    await sleep(30);
    expect(saved()).not.toContain('forbidden');
    a.clock.advance(300);
    await waitFor(() => saved().includes('forbidden'));
    await state.close();
  });

  it('unchanged state is not written again (after a write, or just after loading); the file is private', async () => {
    const a = setup();
    const state = a.open();
    a.pool.disable(a.pool.states()[0]!, 'forbidden', 1e15);
    await state.flush();
    expect(statSync(a.file).mode & 0o777).toBe(0o600);
    const text = readFileSync(a.file, 'utf8');
    rmSync(a.file);
    await state.flush();
    expect(existsSync(a.file)).toBe(false);
    await state.close();

    writeFileSync(a.file, text);
    const b = setup(SECRETS, a.file);
    const reopened = b.open();
    rmSync(a.file);
    await reopened.flush();
    expect(existsSync(a.file)).toBe(false);
    await reopened.close();
  });
});
