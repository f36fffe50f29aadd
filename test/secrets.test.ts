// No key ever reaches a log line, an error body, a response header or `check` output. Every scenario's
// output is captured and searched for every secret.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../src/fake-upstream/server.js';
import { startProxy, type TestProxy } from './helpers/proxy.js';

const run = promisify(execFile);
const SECRETS = ['sk-proj-SECRETaaaaaaaaaaaaaaaaaaaaaaaa1', 'sk-proj-SECRETbbbbbbbbbbbbbbbbbbbbbbbb2', 'plainsecretcccccccccc3'];

let upstream: FakeUpstream | undefined;
let proxy: TestProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

function expectNoSecret(captured: string): void {
  for (const s of SECRETS) {
    expect(captured).not.toContain(s);
    // Not even the distinctive middle of one.
    expect(captured).not.toContain(s.slice(8, 24));
  }
}

describe('secrets never leave the pool', () => {
  it('through logs, error bodies and headers, even when the upstream echoes the key', async () => {
    upstream = await startFakeUpstream();
    proxy = await startProxy({ upstreamUrl: upstream.url, keys: SECRETS, retry: { maxRetries: 1, backoffBaseMs: 0 }, cooldown: { backoffBaseMs: 1 } });
    const echo = (status: number, secret: string) => ({
      kind: 'status' as const,
      status,
      body: JSON.stringify({ error: { message: `Incorrect API key provided: ${secret}. Also ${secret.slice(0, 12)}****`, code: 'x' } }),
      headers: { 'x-echo': secret },
    });
    upstream.script(SECRETS[0]!, echo(429, SECRETS[0]!), echo(500, SECRETS[0]!));
    upstream.script(SECRETS[1]!, echo(429, SECRETS[1]!));
    upstream.script(SECRETS[2]!, echo(401, SECRETS[2]!));

    const captured: string[] = [];
    const call = async (path: string, init: Parameters<typeof request>[1] = {}) => {
      const res = await request(`${proxy!.url}${path}`, init);
      const text = await res.body.text();
      captured.push(String(res.statusCode), JSON.stringify(res.headers), text);
      return res.statusCode;
    };
    // 429, 429, 401 -> disabled, then the budget: one more attempt that gets 500.
    const statuses = [await call('/v1/chat/completions', { method: 'POST', body: '{}' })];
    for (const k of SECRETS.slice(0, 2)) upstream.setDefault(k, echo(429, k));
    statuses.push(await call('/v1/models'));
    statuses.push(await call('/v1/models', { headers: { authorization: `Bearer ${SECRETS[0]}` } }));
    expect(statuses[0]).toBe(500);
    expect(statuses[1]).toBe(429);
    captured.push(...proxy.logs);
    expect(proxy.logs.length).toBeGreaterThan(3);
    expect(captured.join('\n')).toContain('[redacted]');
    expectNoSecret(captured.join('\n'));
  });

  it('through `keypool check` output', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kp-secrets-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(
      file,
      `upstreams:\n  - name: openai\n    baseUrl: https://api.openai.com/v1\n    keys: [${SECRETS[0]}, { name: b, key: "${SECRETS[1]}" }]\n    keysFromEnv: KP_TEST_KEYS\n`,
    );
    const { stdout, stderr } = await run(process.execPath, ['dist/src/main.js', 'check', '--config', file], {
      env: { ...process.env, KP_TEST_KEYS: SECRETS[2] },
    });
    expect(stdout).toContain('openai-1');
    expect(stdout).toContain('sk-…aaa1');
    expectNoSecret(stdout + stderr);
  });
});
