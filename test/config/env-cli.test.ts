// The built CLI reads KEYPOOL_HOST / KEYPOOL_PORT / KEYPOOL_STATE_FILE for a user's own config, and a
// command-line flag still beats them (flag > env > file).
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { serve } from '../helpers/serve.js';

const run = promisify(execFile);
const MAIN = 'dist/src/main.js';

function userConfig(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kp-env-cli-'));
  const file = join(dir, 'keypool.yaml');
  writeFileSync(file, 'server: { host: 127.0.0.1, port: 8787 }\nupstreams: [{ name: a, baseUrl: "http://127.0.0.1:9/v1", keys: [sk-env-cli-key-1] }]\n');
  return file;
}

async function check(env: NodeJS.ProcessEnv) {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, 'check', '--config', userConfig()], { env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('environment overrides through the CLI', () => {
  it('override a user config that does not mention them', async () => {
    const r = await check({ KEYPOOL_HOST: '0.0.0.0', KEYPOOL_PORT: '9123' });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('listen 0.0.0.0:9123');
  });
  it('a bad one names the variable and the field', async () => {
    const r = await check({ KEYPOOL_PORT: 'http' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('KEYPOOL_PORT (server.port): expected a number, got text that is not one');
  });
  it('--port beats KEYPOOL_PORT', async () => {
    const s = await serve(userConfig(), { KEYPOOL_HOST: '127.0.0.1', KEYPOOL_PORT: '9' });
    try {
      expect(new URL(s.url).port).not.toBe('9');
    } finally {
      await s.stop();
    }
  });
});
