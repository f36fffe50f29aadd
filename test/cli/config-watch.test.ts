// Reload on the built CLI: editing the config file (or sending SIGHUP) applies it without a restart; a
// bad edit is refused with the reason and the running config stays.
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { serve } from '../helpers/serve.js';
import { waitFor } from '../helpers/wait.js';

const K1 = 'sk-watch-key-one-000001';
const K2 = 'sk-watch-key-two-000002';
const closers: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

const doc = (url: string, keys: string[]) => `upstreams:\n  - name: up\n    baseUrl: ${url}/v1\n    keys: [${keys.join(', ')}]\n`;

async function setup() {
  const upstream: FakeUpstream = await startFakeUpstream();
  closers.push(() => upstream.close());
  const dir = mkdtempSync(join(tmpdir(), 'kp-watch-'));
  const file = join(dir, 'keypool.yaml');
  writeFileSync(file, doc(upstream.url, [K1]));
  const kp = await serve(file);
  closers.push(() => void kp.child.kill('SIGKILL'));
  const get = async () => {
    const r = await request(`${kp.url}/v1/models`);
    await r.body.dump();
    return r.statusCode;
  };
  return { upstream, dir, file, kp, get };
}

describe('config reload', () => {
  it('an edit of the config file (written in place or renamed over it) is applied; a bad one is refused and the old stays', async () => {
    const { upstream, dir, file, kp, get } = await setup();
    expect(await get()).toBe(200);
    // An editor's save: write a temporary file, rename it over the config.
    const tmp = join(dir, '.keypool.yaml.swp');
    writeFileSync(tmp, doc(upstream.url, [K2]));
    renameSync(tmp, file);
    await waitFor(() => kp.output().includes('"msg":"config reloaded"'), 10_000);
    upstream.reset();
    expect(await get()).toBe(200);
    expect(upstream.requests.map((r) => r.key)).toEqual([K2]);

    writeFileSync(file, 'upstreams: [{ name: up, baseUrl: "not a url", keys: [x] }]\n');
    await waitFor(() => kp.output().includes('config reload refused'), 10_000);
    expect(kp.output()).toContain('upstreams[0].baseUrl');
    upstream.reset();
    expect(await get()).toBe(200);
    expect(upstream.requests.map((r) => r.key)).toEqual([K2]);
    for (const k of [K1, K2]) expect(kp.output()).not.toContain(k);
  });

  it('SIGHUP re-reads the config', async () => {
    const { upstream, file, kp, get } = await setup();
    // Written without the watcher seeing a change it acts on first: the signal does the reload.
    writeFileSync(file, doc(upstream.url, [K1, K2]));
    kp.child.kill('SIGHUP');
    await waitFor(() => /"why":"(SIGHUP|config file changed)"/.test(kp.output()), 10_000);
    upstream.reset();
    for (let i = 0; i < 4; i++) expect(await get()).toBe(200);
    expect(new Set(upstream.requests.map((r) => r.key))).toEqual(new Set([K1, K2]));
    expect(kp.child.exitCode).toBeNull();
  });
});
