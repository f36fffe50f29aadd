// The built command line: check, serve and demo as a user runs them.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream } from '../src/fake-upstream/server.js';
import { serve } from './helpers/serve.js';

const run = promisify(execFile);
const MAIN = 'dist/src/main.js';

function tempConfig(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'kp-cli-'));
  const file = join(dir, 'keypool.yaml');
  writeFileSync(file, text);
  return file;
}

async function runCli(args: string[], env: NodeJS.ProcessEnv = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('keypool check', () => {
  it('validates proxy.example.yaml once keys are set', async () => {
    const r = await runCli(['check', '--config', 'proxy.example.yaml'], { OPENAI_API_KEYS: 'sk-one-1234567890abcdef,sk-two-1234567890abcdef' });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('upstream openai: /v1 -> https://api.openai.com/v1 (2 key(s)');
  });

  it('exits 2 naming the field of a bad config', async () => {
    const file = tempConfig('upstreams: [{ name: a, baseUrl: "http://127.0.0.1:1", keys: [k] }]\nretry: { maxRetries: "three" }\n');
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('retry.maxRetries: expected a number, got text that is not one');
  });

  it('says so when an upstream has no keys', async () => {
    const r = await runCli(['check', '--config', 'proxy.example.yaml'], { OPENAI_API_KEYS: '' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('upstream openai has no keys (is OPENAI_API_KEYS set?)');
  });

  it('takes KEYPOOL_CONFIG as the default config', async () => {
    const r = await runCli(['check'], { KEYPOOL_CONFIG: 'proxy.example.yaml', OPENAI_API_KEYS: 'sk-env-only-key-123456789' });
    expect(r.code).toBe(0);
  });
});

describe('keypool serve', () => {
  it('serves, answers /healthz, proxies, and stops on SIGTERM', async () => {
    const upstream = await startFakeUpstream();
    const file = tempConfig(`upstreams:\n  - name: t\n    baseUrl: ${upstream.url}/v1\n    keys: [sk-cli-serve-key-0001]\n`);
    const s = await serve(file);
    try {
      const health = await request(`${s.url}/healthz`);
      expect(health.statusCode).toBe(200);
      await health.body.dump();
      const res = await request(`${s.url}/v1/models`);
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-keypool-key']).toBe('t-1');
      await res.body.dump();
      expect(await s.stop()).toBe(0);
    } finally {
      s.child.kill('SIGKILL');
      await upstream.close();
    }
  });

  it('remembers a cooling key across a restart through state.file', async () => {
    const upstream = await startFakeUpstream();
    const keys = ['sk-cli-state-key-0001', 'sk-cli-state-key-0002'];
    upstream.setDefault(keys[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 120_000 });
    const dir = mkdtempSync(join(tmpdir(), 'kp-cli-state-'));
    const file = tempConfig(
      `state: { file: ${join(dir, 'state.json')} }\nupstreams:\n  - name: t\n    baseUrl: ${upstream.url}/v1\n    keys: [${keys.join(', ')}]\n`,
    );
    const first = await serve(file);
    try {
      const res = await request(`${first.url}/v1/models`);
      await res.body.dump();
      expect(res.headers['x-keypool-attempts']).toBe('2');
      expect(await first.stop()).toBe(0);
    } finally {
      first.child.kill('SIGKILL');
    }
    upstream.reset();
    const second = await serve(file);
    try {
      for (let i = 0; i < 3; i++) {
        const res = await request(`${second.url}/v1/models`);
        await res.body.dump();
        expect(res.headers['x-keypool-key']).toBe('t-2');
      }
      expect(upstream.requests.map((r) => r.key)).toEqual([keys[1], keys[1], keys[1]]);
      expect(readFileSync(join(dir, 'state.json'), 'utf8')).not.toContain('sk-cli-state');
    } finally {
      await second.stop();
      second.child.kill('SIGKILL');
      await upstream.close();
    }
  });
});

describe('keypool demo', () => {
  it('shows rotation and a summary with no client-visible errors', async () => {
    const r = await runCli(['demo', '--requests', '12', '--concurrency', '4']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/rate-limited \(429\); cooling/);
    expect(r.stdout).toContain('delta    out of credit');
    expect(r.stdout).toMatch(/requests 12, succeeded 12, client-visible errors 0/);
    expect(r.stdout).not.toContain('sk-demo');
  });
});
