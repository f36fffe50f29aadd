// Runs the built CLI's `keypool serve` as its own process, as a user would.
import { spawn } from 'node:child_process';

const MAIN = 'dist/src/main.js';

/** Starts `keypool serve` on a free port; resolves with its URL once it listens. */
export async function serve(file: string, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', file, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`no listen line: ${buf}`)), 10_000);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
  });
  const stop = async () => {
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    return exited;
  };
  return { child, url, stop, output: () => output };
}

