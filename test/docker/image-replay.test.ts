// The Docker image, replayed without a Docker engine: the Dockerfile's stages are rebuilt in a temp
// directory exactly as written (replay.ts: what COPY copies, production dependencies installed for real,
// the build run), then the image's runtime command runs as an unprivileged user with the image's
// environment: with a user's config on another port, and with the image's own config. The healthcheck
// command, a proxied request, SIGTERM and the state file are checked. A file the image forgets, a dev
// dependency needed at run time, an env override that does not work, a shell-form entrypoint: each fails
// here.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { DEFAULT_HEALTH_TIMEOUT_MS } from '../../src/cli/health.js';
import { configSchema } from '../../src/config/schema.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { waitFor } from '../helpers/wait.js';
import type { Form } from './dockerfile.js';
import { inRoot, replayDockerfile, type ReplayedStage } from './replay.js';

const CONTEXT = process.cwd();
/** `nobody`: stands for the image's `node` user when this test runs as root. */
const UNPRIVILEGED = { uid: 65534, gid: 65534 };
const asRoot = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;
const KEYS = ['sk-image-replay-key-aaaaaaaa01', 'sk-image-replay-key-aaaaaaaa02'];
const SECRET_FILE_KEY = 'sk-image-secret-file-aaaaaa03';
const CLIENT_TOKEN = 'tok-image-replay-agents-000001';

let work: string;
let image: ReplayedStage;
let stages: ReplayedStage[];
let upstream: FakeUpstream;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  // Module resolution walks up from the image's /app: nothing above it may hold packages that would
  // hide one the image lacks.
  for (const dir of [tmpdir(), '/']) expect(existsSync(join(dir, 'node_modules')), `${dir}/node_modules`).toBe(false);
  work = mkdtempSync(join(tmpdir(), 'kp-image-'));
  // mkdtemp makes it 0700; the unprivileged user must reach the image's files.
  chmodSync(work, 0o755);
  stages = replayDockerfile({
    context: CONTEXT,
    into: work,
    owner: asRoot ? UNPRIVILEGED : undefined,
    npmFlags: ['--prefer-offline', '--loglevel=error'],
  });
  for (const s of stages) chmodSync(s.root, 0o755);
  image = stages.at(-1) as ReplayedStage;
  if (!asRoot) console.warn('image replay: not root (or no setpriv), so the image runs as this user, not an unprivileged one');
  upstream = await startFakeUpstream();
}, 300_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await upstream?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** An argument of the image's command as it runs here: `node` is this node, image paths are under the root. */
function hostArg(arg: string, i: number): string {
  if (i === 0 && arg === 'node') return process.execPath;
  return arg.startsWith('/') ? inRoot(image.root, '/', arg) : arg;
}

function execArgv(form: Form | undefined, what: string): readonly string[] {
  if (form === undefined) return [];
  if (!form.exec) throw new Error(`${what} is in shell form: /bin/sh would be PID 1 and SIGTERM would not reach node`);
  return form.argv;
}

/** The image's environment (paths mapped into the root), plus what `docker run -e` adds. */
function imageEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(image.root, 'home', 'node') };
  for (const [k, v] of image.env) env[k] = v.startsWith('/') ? inRoot(image.root, '/', v) : v;
  return { ...env, ...extra };
}

function asImageUser(argv: readonly string[]): [string, string[]] {
  const mapped = argv.map(hostArg);
  if (!asRoot) return [mapped[0] ?? '', mapped.slice(1)];
  expect(image.user, 'the image runs as a non-root user').not.toMatch(/^(root|0)(:|$)/);
  return ['setpriv', [`--reuid=${UNPRIVILEGED.uid}`, `--regid=${UNPRIVILEGED.gid}`, '--clear-groups', '--', ...mapped]];
}

interface Running {
  readonly child: ChildProcess;
  output(): string;
  /** Sends SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** `docker run` of the image: ENTRYPOINT + (args or CMD), in WORKDIR, as USER, with the image's env. */
function runImage(env: Record<string, string>, args?: readonly string[]): Running {
  const argv = [...execArgv(image.entrypoint, 'ENTRYPOINT'), ...(args ?? execArgv(image.cmd, 'CMD'))];
  const [file, rest] = asImageUser(argv);
  mkdirSync(imageEnv({}).HOME ?? '', { recursive: true });
  const child = spawn(file, rest, { cwd: join(image.root, image.workdir), env: imageEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  void exited.then(() => children.delete(child));
  return {
    child,
    output: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs to the end (e.g. --version, a config that fails). */
async function runToEnd(env: Record<string, string>, args?: readonly string[]): Promise<{ code: number | null; output: string }> {
  const r = runImage(env, args);
  const code = await new Promise<number | null>((resolve) => r.child.once('exit', (c) => resolve(c)));
  return { code, output: r.output() };
}

/** The HEALTHCHECK command, as Docker runs it inside the container. */
function healthcheck(env: Record<string, string>): { code: number | null; output: string } {
  const [file, rest] = asImageUser(execArgv(image.healthcheck?.form, 'HEALTHCHECK'));
  const r = spawnSync(file, rest, { cwd: join(image.root, image.workdir), env: imageEnv(env), encoding: 'utf8', timeout: 15_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const addr = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

/** Whether something listens on 0.0.0.0:port (IPv4 wildcard), from the kernel's own table. */
function listensOnAllInterfaces(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((l) => {
      const f = l.trim().split(/\s+/);
      return f[1] === `00000000:${hex}` && f[3] === '0A';
    });
}

/** Writes a file where the image would see it (a bind mount), readable by the image's user. */
function mount(imagePath: string, text: string): string {
  const file = inRoot(image.root, '/', imagePath);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text, { mode: 0o644 });
  return file;
}

/** The real uid of a running process. */
function uidOf(pid: number | undefined): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'));
  return Number(line?.split(/\s+/)[1]);
}

function expectNoSecret(text: string): void {
  for (const k of [...KEYS, SECRET_FILE_KEY, CLIENT_TOKEN]) expect(text).not.toContain(k);
}

describe('the image, replayed', () => {
  it('holds the built output and production dependencies only, enough for every import', () => {
    const app = join(image.root, image.workdir);
    const pkg = JSON.parse(readFileSync(join(CONTEXT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const installed = readdirSync(join(app, 'node_modules'));
    for (const dev of Object.keys(pkg.devDependencies)) expect(existsSync(join(app, 'node_modules', dev)), `dev dependency ${dev} in the image`).toBe(false);
    expect(installed.length).toBeGreaterThan(0);
    expect(existsSync(join(app, 'src')), 'TypeScript sources in the image').toBe(false);
    expect(existsSync(join(app, 'test')) || existsSync(join(app, 'dist', 'test'))).toBe(false);
    // Every package the built code imports, statically or not, is a production dependency and is there.
    const specifiers = new Set<string>();
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.js')) {
          const text = readFileSync(p, 'utf8');
          for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"./][^'"]*)['"]/g)) specifiers.add(m[1] ?? '');
        }
      }
    };
    walk(join(app, 'dist', 'src'));
    const packages = [...specifiers].filter((s) => !s.startsWith('node:')).map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : (s.split('/')[0] ?? s)));
    expect(packages.length).toBeGreaterThan(3);
    for (const p of new Set(packages)) {
      expect(Object.keys(pkg.dependencies), `${p} is imported at run time`).toContain(p);
      expect(existsSync(join(app, 'node_modules', p, 'package.json')), `${p} installed in the image`).toBe(true);
    }
  });

  it('runs node as PID 1 in exec form, as a non-root user, with a healthcheck inside its timeout', () => {
    expect(image.entrypoint?.exec).toBe(true);
    expect(image.cmd?.exec).toBe(true);
    expect(image.healthcheck?.form.exec).toBe(true);
    expect(image.user).toBe('node');
    // Docker kills a healthcheck at --timeout: the command's own must be shorter, to say why it failed.
    const timeout = /^(\d+)s$/.exec(image.healthcheck?.options['timeout'] ?? '')?.[1];
    expect(Number(timeout) * 1000).toBeGreaterThan(DEFAULT_HEALTH_TIMEOUT_MS);
    expect(image.env.get('KEYPOOL_HOST')).toBe('0.0.0.0');
    expect(image.env.get('KEYPOOL_CONFIG')).toBe('/etc/keypool/keypool.yaml');
    // The state file's directory is a volume the runtime user may write.
    const stateDir = (image.env.get('KEYPOOL_STATE_FILE') ?? '').replace(/\/[^/]*$/, '');
    expect(image.volumes).toContain(stateDir);
    expect(stages.flatMap((st) => st.runs.map((r) => r.did))).toContain('npm ci --omit=dev');
  });

  it('--version answers from the package.json it ships', async () => {
    const { version } = JSON.parse(readFileSync(join(CONTEXT, 'package.json'), 'utf8')) as { version: string };
    const r = await runToEnd({}, ['--version']);
    expect(r).toEqual({ code: 0, output: `${version}\n` });
  });

  it('serves a user config on another port (KEYPOOL_PORT), on 0.0.0.0 (KEYPOOL_HOST), with its healthcheck, state and SIGTERM', async () => {
    const port = await freePort();
    // The user's config says loopback and 8787; the image's environment and -e KEYPOOL_PORT say otherwise.
    const user = `server: { host: 127.0.0.1, port: 8787 }\nupstreams:\n  - name: mine\n    baseUrl: ${upstream.url}/v1\n    keysFromEnv: MY_KEYS\n`;
    mount('/config/keypool.yaml', user);
    const env = { KEYPOOL_CONFIG: inRoot(image.root, '/', '/config/keypool.yaml'), KEYPOOL_PORT: String(port), MY_KEYS: KEYS.join(',') };
    // On 0.0.0.0 (the image's KEYPOOL_HOST) without client tokens keypool refuses to start.
    const bare = await runToEnd(env);
    expect(bare.code).toBe(2);
    expect(bare.output).toContain('refusing to listen on 0.0.0.0 without client tokens');
    mount('/config/keypool.yaml', `${user}clients:\n  - name: agents\n    token: ${CLIENT_TOKEN}\n`);
    upstream.reset();
    upstream.script(KEYS[0]!, { kind: 'rate_limit', style: 'retry-after', ms: 120_000 });
    const kp = runImage(env);
    try {
      await waitFor(() => kp.output().includes('keypool ready') || kp.child.exitCode !== null, 15_000);
      expect(kp.output()).toContain(`Server listening at http://127.0.0.1:${port}`);
      if (asRoot) expect(uidOf(kp.child.pid), 'runs as the unprivileged user').toBe(UNPRIVILEGED.uid);
      expect(listensOnAllInterfaces(port), 'KEYPOOL_HOST=0.0.0.0 beats the config').toBe(true);
      expect(healthcheck(env)).toEqual({ code: 0, output: `ok http://127.0.0.1:${port}/healthz\n` });

      const res = await request(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_TOKEN}` },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
      expect(res.headers['x-keypool-key']).toBe('mine-2');
      expect(upstream.requests.map((r) => r.key)).toEqual([KEYS[0], KEYS[1]]);
    } finally {
      expect(await kp.stop(), 'SIGTERM reaches node and it stops cleanly').toBe(0);
    }
    expect(kp.output()).toContain('"msg":"stopped"');
    // Stopped: the healthcheck says so.
    expect(healthcheck(env).code).toBe(1);
    // KEYPOOL_STATE_FILE put the state on the volume, written by the unprivileged user.
    const state = readFileSync(inRoot(image.root, '/', image.env.get('KEYPOOL_STATE_FILE') ?? ''), 'utf8');
    expect(state).toContain('rate_limited');
    expectNoSecret(state + kp.output());
  });

  it('serves with its own config: keys from OPENAI_API_KEYS or a secret file', async () => {
    const port = await freePort();
    upstream.reset();
    const base = { OPENAI_UPSTREAM_URL: `${upstream.url}/v1`, KEYPOOL_PORT: String(port), KEYPOOL_CLIENT_TOKEN: CLIENT_TOKEN };
    const secretFile = mount('/run/secrets/openai_api_keys', `# pool keys\n${SECRET_FILE_KEY}\n`);
    for (const [env, key] of [
      [{ ...base, OPENAI_API_KEYS: KEYS[0]! }, KEYS[0]],
      [{ ...base, OPENAI_API_KEYS_FILE: secretFile }, SECRET_FILE_KEY],
    ] as const) {
      const kp = runImage(env);
      try {
        await waitFor(() => kp.output().includes('keypool ready') || kp.child.exitCode !== null, 15_000);
        expect(listensOnAllInterfaces(port)).toBe(true);
        expect(healthcheck(env).code).toBe(0);
        const refused = await request(`http://127.0.0.1:${port}/v1/models`);
        expect(refused.statusCode).toBe(401);
        await refused.body.dump();
        const res = await request(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: `Bearer ${CLIENT_TOKEN}` } });
        expect(res.statusCode).toBe(200);
        await res.body.dump();
        expect(upstream.requests.at(-1)?.key).toBe(key);
      } finally {
        expect(await kp.stop()).toBe(0);
      }
      expectNoSecret(kp.output());
    }
  });

  it('refuses to start without keys or without a client token, saying which variable to set', async () => {
    const r = await runToEnd({ KEYPOOL_PORT: String(await freePort()), KEYPOOL_CLIENT_TOKEN: CLIENT_TOKEN });
    expect(r.code).toBe(2);
    expect(r.output).toContain('upstream openai has no keys (is OPENAI_API_KEYS set?)');
    const t = await runToEnd({ KEYPOOL_PORT: String(await freePort()), OPENAI_API_KEYS: KEYS[0]! });
    expect(t.code).toBe(2);
    expect(t.output).toContain('environment variable KEYPOOL_CLIENT_TOKEN is not set');
  });

  it('its config asks agents for KEYPOOL_CLIENT_TOKEN once keypool has client tokens', () => {
    const text = readFileSync(inRoot(image.root, '/', image.env.get('KEYPOOL_CONFIG') ?? ''), 'utf8');
    const active = /^clients:\s*\n\s+- name: \S+\n\s+token: \$\{KEYPOOL_CLIENT_TOKEN\}/m.test(text);
    // The image listens on 0.0.0.0: its config must ask for a client token (keypool refuses to start otherwise).
    expect(active, "docker/keypool.yaml: clients: [{ token: ${KEYPOOL_CLIENT_TOKEN} }] on exactly when the schema has `clients`").toBe('clients' in configSchema.shape);
    expect(text).toContain('KEYPOOL_CLIENT_TOKEN');
  });
});
