// `keypool check --probe` against the fake upstream's key behaviours: each key gets one request and its
// verdict by the proxy's rules; the exit code says whether all were ok; probes are bounded in number at
// once and in time each; no secret is printed.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkCommand } from '../../src/cli/check.js';
import { startFakeUpstream, type FakeUpstream } from '../../src/fake-upstream/server.js';
import { captureIo } from './io.js';

const KEYS = {
  ok: 'sk-probe-ok-aaaaaaaaaaaaaaaa01',
  unauthorized: 'sk-probe-bad-aaaaaaaaaaaaaaa02',
  revoked: 'sk-probe-rev-aaaaaaaaaaaaaaa03',
  quota: 'sk-probe-quota-aaaaaaaaaaaaa04',
  payment: 'sk-probe-pay-aaaaaaaaaaaaaaa05',
  limited: 'sk-probe-rate-aaaaaaaaaaaaaa06',
  hang: 'sk-probe-hang-aaaaaaaaaaaaaa07',
  model: 'sk-probe-model-aaaaaaaaaaaaa08',
  forbidden: 'sk-probe-forb-aaaaaaaaaaaaaa09',
  server: 'sk-probe-5xx-aaaaaaaaaaaaaaa10',
} as const;
const CLOSED_KEY = 'sk-probe-closed-aaaaaaaaaaaa11';
const REFUSED_KEY = 'sk-probe-refused-aaaaaaaaaaa12';
const ALL_SECRETS = [...Object.values(KEYS), CLOSED_KEY, REFUSED_KEY];

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

function configFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'kp-probe-'));
  const file = join(dir, 'keypool.yaml');
  writeFileSync(file, text);
  return file;
}

async function listening(server: Server | NetServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const s = createNetServer();
  const port = await listening(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function fakeWithBehaviours(): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream({
    rateLimit: { requests: 100, windowMs: 60_000 },
    keys: {
      [KEYS.unauthorized]: { kind: 'unauthorized' },
      [KEYS.revoked]: { kind: 'key_revoked' },
      [KEYS.quota]: { kind: 'insufficient_quota' },
      [KEYS.payment]: { kind: 'payment_required' },
      [KEYS.limited]: { kind: 'rate_limit', style: 'retry-after', ms: 20_000 },
      [KEYS.hang]: { kind: 'hang' },
      [KEYS.model]: { kind: 'model_not_found', status: 404 },
      [KEYS.forbidden]: { kind: 'forbidden' },
      [KEYS.server]: { kind: 'server_error', status: 503 },
    },
  });
  open.push(upstream);
  return upstream;
}

/** The key's row of the probe table (below its UPSTREAM heading; the config listing comes first). */
function rowOf(stdout: string, key: string): string {
  const lines = stdout.split('\n');
  const table = lines.slice(lines.findIndex((l) => l.startsWith('UPSTREAM')));
  return table.find((l) => l.split(/\s+/)[1] === key) ?? '';
}

describe('keypool check --probe', () => {
  it('tells each key behaviour apart, with headroom, and exits 1', async () => {
    const upstream = await fakeWithBehaviours();
    // A server that accepts and closes every connection without a word.
    const closer = createNetServer((socket) => socket.destroy());
    open.push(closer);
    const closerPort = await listening(closer);
    const names = Object.keys(KEYS);
    const file = configFile(
      [
        'upstreams:',
        '  - name: fake',
        `    baseUrl: ${upstream.url}/v1`,
        `    keys: [${names.map((n) => `{ name: ${n}, key: ${KEYS[n as keyof typeof KEYS]} }`).join(', ')}]`,
        '  - name: closes',
        '    prefix: /closes',
        `    baseUrl: http://127.0.0.1:${closerPort}/v1`,
        `    keys: [{ name: closed, key: ${CLOSED_KEY} }]`,
        '  - name: nobody',
        '    prefix: /nobody',
        `    baseUrl: http://127.0.0.1:${await closedPort()}/v1`,
        `    keys: [{ name: refused, key: ${REFUSED_KEY} }]`,
        'health: { probeTimeoutMs: 500 }',
      ].join('\n'),
    );
    const io = captureIo();
    const code = await checkCommand.run(['--config', file, '--probe'], io);
    const out = io.stdout();
    expect(code).toBe(1);
    const expectations: [string, RegExp][] = [
      ['ok', /ok\s+200\s+\d+\/100 \(\d+s\)/],
      ['unauthorized', /invalid\s+401.*invalid_api_key/],
      ['revoked', /invalid\s+403.*organization_deactivated/],
      ['quota', /out of credit\s+429.*insufficient_quota/],
      ['payment', /out of credit\s+402/],
      ['limited', /rate-limited\s+429.*retry in 20s/],
      ['hang', /unreachable\s+-.*timeout/],
      ['model', /error\s+404.*model_not_found/],
      ['forbidden', /forbidden\s+403.*permission_denied/],
      ['server', /error\s+503/],
      ['closed', /unreachable\s+-.*UND_ERR_SOCKET/],
      ['refused', /unreachable\s+-.*ECONNREFUSED/],
    ];
    for (const [key, pattern] of expectations) expect(rowOf(out, key), key).toMatch(pattern);
    expect(out).toContain('11 of 12 key(s) not ok');
    // One request per key, GET /v1/models, with the key as a bearer token.
    const seen = upstream.requests.map((r) => `${r.method} ${r.path} ${r.key}`).sort();
    expect(seen).toEqual(Object.values(KEYS).map((k) => `GET /v1/models ${k}`).sort());
    for (const s of ALL_SECRETS) expect(out + io.stderr()).not.toContain(s);
  });

  it('exits 0 when every key is ok, and --json carries no secret', async () => {
    const upstream = await startFakeUpstream();
    open.push(upstream);
    const file = configFile(`upstreams:\n  - name: fake\n    baseUrl: ${upstream.url}/v1\n    keys: [${KEYS.ok}, ${KEYS.limited}]\n`);
    const io = captureIo();
    expect(await checkCommand.run(['--config', file, '--probe', '--json'], io)).toBe(0);
    const doc = JSON.parse(io.stdout()) as { keys: { key: string; result: string; probe: string; fingerprint: string }[]; ok: number; notOk: number };
    expect(doc).toMatchObject({ ok: 2, notOk: 0 });
    expect(doc.keys.map((k) => [k.key, k.result, k.probe])).toEqual([
      ['fake-1', 'ok', 'GET /models'],
      ['fake-2', 'ok', 'GET /models'],
    ]);
    for (const s of ALL_SECRETS) expect(io.stdout() + io.stderr()).not.toContain(s);
  });

  it('--model finds the keys that may not use a model', async () => {
    const upstream = await fakeWithBehaviours();
    const file = configFile(`upstreams:\n  - name: fake\n    baseUrl: ${upstream.url}/v1\n    keys: [{ name: good, key: ${KEYS.ok} }, { name: barred, key: ${KEYS.model} }]\n`);
    const io = captureIo();
    expect(await checkCommand.run(['--config', file, '--probe', '--model', 'gpt-4o'], io)).toBe(1);
    expect(rowOf(io.stdout(), 'good')).toMatch(/ok\s+200/);
    expect(rowOf(io.stdout(), 'barred')).toMatch(/model refused\s+404.*gpt-4o: model_not_found/);
    expect(upstream.requests.map((r) => r.path)).toEqual(['/v1/models/gpt-4o', '/v1/models/gpt-4o']);
  });

  it('sends the configured probe: method, path, JSON body, auth header', async () => {
    const upstream = await startFakeUpstream();
    open.push(upstream);
    const file = configFile(
      [
        'upstreams:',
        '  - name: fake',
        `    baseUrl: ${upstream.url}/v1`,
        '    authHeader: x-api-key',
        `    keys: [${KEYS.ok}]`,
        '    probe: { method: POST, path: /chat/completions, body: \'{"model":"gpt-4o-mini","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}\' }',
      ].join('\n'),
    );
    const io = captureIo();
    expect(await checkCommand.run(['--config', file, '--probe'], io)).toBe(0);
    const [req] = upstream.requests;
    expect(req).toMatchObject({ method: 'POST', path: '/v1/chat/completions' });
    expect(req?.headers['x-api-key']).toBe(KEYS.ok);
    expect(req?.headers['authorization']).toBeUndefined();
    expect(req?.headers['content-type']).toBe('application/json');
    expect(JSON.parse(req?.body.toString() ?? '')).toMatchObject({ model: 'gpt-4o-mini', max_tokens: 1 });
    expect(io.stdout()).toContain('probe POST /chat/completions');
  });

  it('keeps at most --concurrency probes in flight', async () => {
    let inflight = 0;
    let most = 0;
    const server = createHttpServer((_req, res) => {
      inflight++;
      most = Math.max(most, inflight);
      // Answer on the next turn so that overlapping probes would be seen overlapping.
      setImmediate(() => {
        inflight--;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[]}');
      });
    });
    open.push(server);
    const port = await listening(server);
    const keys = Array.from({ length: 12 }, (_, i) => `sk-conc-aaaaaaaaaaaaaaaa${String(i).padStart(2, '0')}`);
    const file = configFile(`upstreams:\n  - name: c\n    baseUrl: http://127.0.0.1:${port}/v1\n    keys: [${keys.join(', ')}]\n`);
    const io = captureIo();
    expect(await checkCommand.run(['--config', file, '--probe', '--concurrency', '3'], io)).toBe(0);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(3);
  });

  it('refuses probe flags without --probe, and a bad --concurrency, with exit 2', async () => {
    const file = configFile('upstreams: [{ name: a, baseUrl: "http://127.0.0.1:9/v1", keys: [sk-x-aaaaaaaaaaaaaaaaaaaa] }]\n');
    await expect(checkCommand.run(['--config', file, '--model', 'x'], captureIo())).rejects.toThrow('--model goes with --probe');
    await expect(checkCommand.run(['--config', file, '--probe', '--concurrency', '0'], captureIo())).rejects.toThrow('--concurrency: expected a whole number from 1 to 64');
    await expect(checkCommand.run(['--config', file, '--probe', '--upstream', 'b'], captureIo())).rejects.toThrow('--upstream: no upstream of that name (a)');
  });
});
