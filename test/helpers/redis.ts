// A real redis-server for tests, on a free loopback port, with no persistence. When redis-server is not
// installed the Redis tests are skipped with a notice, unless KEYPOOL_REQUIRE_REDIS=1 (CI) makes that an error.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

export const REDIS_BIN = 'redis-server';

export function redisAvailable(): boolean {
  const found = spawnSync(REDIS_BIN, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!found) {
    if (process.env.KEYPOOL_REQUIRE_REDIS === '1') throw new Error('redis-server is required (KEYPOOL_REQUIRE_REDIS=1) but not installed');
    console.warn('NOTICE: redis-server not found: Redis tests are skipped (apt-get install redis-server to run them)');
  }
  return found;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** Stops it (SIGKILL: a crash, not a shutdown). */
  kill(): Promise<void>;
}

export async function startRedis(port?: number): Promise<TestRedis> {
  const p = port ?? (await freePort());
  const child: ChildProcess = spawn(REDIS_BIN, ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`redis-server exited (${code}): ${out}`));
    });
  });
  return {
    url: `redis://127.0.0.1:${p}`,
    port: p,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}
