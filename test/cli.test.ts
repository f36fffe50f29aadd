// The built command line as a user runs it: check, serve, demo, every --help, --version, bad usage,
// npm start, and serve's pretty log lines.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeUpstream } from '../src/fake-upstream/server.js';
import { serve } from './helpers/serve.js';
import { waitFor } from './helpers/wait.js';

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

describe('keypool --help, --version and bad usage', () => {
  const COMMANDS = ['serve', 'check', 'status', 'health', 'demo', 'fake-upstream'];

  it.each(COMMANDS)('%s --help prints its own usage and exits 0', async (name) => {
    for (const flag of ['--help', '-h']) {
      const r = await runCli([name, flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: keypool ${name} \\[options\\]\\n`));
      expect(r.stdout).toContain('-h, --help');
      expect(r.stderr).toBe('');
    }
  });

  it('help wins over other arguments, and `keypool help <command>` works too', async () => {
    const r = await runCli(['serve', '--bogus', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: keypool serve/);
    const h = await runCli(['help', 'status']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: keypool status/);
  });

  it('lists every command on --help, and on stderr with exit 2 without one', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    for (const name of COMMANDS) expect(help.stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
    const bare = await runCli([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('Usage: keypool <command>');
  });

  it('--version prints package.json version', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    for (const flag of ['--version', '-v', 'version']) {
      const r = await runCli([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
    }
  });

  it('an unknown option or command exits 2 naming it, never echoing a value', async () => {
    const SECRET = 'sk-typed-in-the-wrong-place-0123';
    const cases: [string[], string][] = [
      [['serve', '--bogus'], 'keypool serve: unknown option --bogus'],
      [['check', `--confg=${SECRET}`], 'keypool check: unknown option --confg'],
      [['status', '--tokn', SECRET], 'keypool status: unknown option --tokn'],
      [['status', '--json', SECRET], 'keypool status: unexpected argument: this command takes only options'],
      [['health', '--url'], 'keypool health: option --url needs a value'],
      [['serve', '--pretty=yes'], 'keypool serve: option --pretty takes no value'],
      [['serve', '--port', '99999'], 'keypool serve: --port: expected a whole number from 0 to 65535'],
      [['demo', '--bogus'], 'keypool demo: unknown option --bogus'],
      [['fake-upstream', '--port', 'x'], 'keypool fake-upstream: --port: expected an integer from 0 to 65535'],
      [['fake-upstream', '--bogus'], 'keypool fake-upstream: unknown option --bogus'],
      [['sevre'], 'keypool: unknown command sevre'],
      [[SECRET], 'keypool: unknown command\n'],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stdout + r.stderr).not.toContain(SECRET);
    }
  });

  it('LOG_FORMAT other than json or pretty is a usage error', async () => {
    const r = await runCli(['serve', '--config', 'proxy.example.yaml'], { LOG_FORMAT: 'xml' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('LOG_FORMAT: expected json or pretty');
  });
});

describe('npm start', () => {
  const script = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } }).scripts.start;
  // The start script's own arguments, as npm would run them (without a shell: they hold no expansion).
  const argv = script.split(/\s+/).slice(1);

  async function start(env: NodeJS.ProcessEnv): Promise<{ url: string; stop: () => Promise<number | null> }> {
    expect(script.split(/\s+/).slice(0, 2)).toEqual(['node', MAIN]);
    const child = spawn(process.execPath, [...argv, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      const t = setTimeout(() => reject(new Error(`no listen line: ${buf}`)), 10_000);
      const take = (d: Buffer) => {
        buf += d.toString();
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
    });
    return {
      url,
      stop: async () => {
        const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
        child.kill('SIGTERM');
        return exited;
      },
    };
  }

  it('serves the config named by KEYPOOL_CONFIG', async () => {
    const upstream = await startFakeUpstream();
    const file = tempConfig(`upstreams:\n  - name: fromenv\n    baseUrl: ${upstream.url}/v1\n    keys: [sk-npm-start-key-000001]\n`);
    const s = await start({ KEYPOOL_CONFIG: file });
    try {
      const res = await request(`${s.url}/v1/models`);
      await res.body.dump();
      expect(res.headers['x-keypool-key']).toBe('fromenv-1');
    } finally {
      await s.stop();
      await upstream.close();
    }
  });

  it('falls back to proxy.example.yaml without it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kp-start-'));
    const s = await start({ KEYPOOL_CONFIG: '', OPENAI_API_KEYS: 'sk-example-key-0000000001', KEYPOOL_STATE_FILE: join(dir, 'state.json') });
    try {
      const res = await request(`${s.url}/healthz`);
      expect(res.statusCode).toBe(200);
      await res.body.dump();
      // The example's upstream: a request with no route elsewhere names its prefix.
      const nf = await request(`${s.url}/nowhere`);
      expect(await nf.body.text()).toContain('configured prefixes: /v1');
    } finally {
      expect(await s.stop()).toBe(0);
    }
  });
});

describe('keypool serve --pretty', () => {
  it('writes readable lines, the request line in short, and never a secret', async () => {
    const upstream = await startFakeUpstream();
    const POOL_KEY = 'sk-pretty-pool-key-000000001';
    const CLIENT = 'sk-client-credential-0000001';
    const file = tempConfig(`upstreams:\n  - name: t\n    baseUrl: ${upstream.url}/v1\n    keys: [${POOL_KEY}]\n`);
    for (const [args, env] of [
      [['--pretty'], {}],
      [[], { LOG_FORMAT: 'pretty' }],
    ] as const) {
      const child = spawn(process.execPath, [MAIN, 'serve', '--config', file, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '', ...env } });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await waitFor(() => /Server listening at http:\/\/127\.0\.0\.1:\d+/.test(out), 10_000);
        const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] ?? '';
        const res = await request(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${CLIENT}`, 'content-type': 'application/json', 'x-request-id': 'req-pretty-1' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
        });
        await res.body.dump();
        await waitFor(() => out.includes('req-pretty-1'));
      } finally {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      const lines = out.trim().split('\n');
      // Not JSON; time, level, message first.
      for (const l of lines) expect(l).toMatch(/^\d\d:\d\d:\d\d\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) /);
      expect(out).toMatch(/INFO {2}POST \/v1\/chat\/completions 200 via t-1 [\d.]+ms reqId=req-pretty-1 upstream=t client=127\.0\.0\.1 model=gpt-4o-mini attempts=1/);
      expect(out).toMatch(/INFO {2}stopped signal=SIGTERM/);
      // stdout is a pipe here: no colour.
      expect(out).not.toContain('\u001b[');
      expect(out).not.toContain(POOL_KEY);
      expect(out).not.toContain(CLIENT);
    }
    await upstream.close();
  });
});
