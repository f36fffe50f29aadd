// `keypool status` against a small local server answering GET /admin/keys as OPS-SPEC.md says: the key
// table, --json, colour only on a terminal without NO_COLOR, the token sent and never printed, clear
// errors for an unreachable keypool, a refused token, a server without the admin API or with garbage.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { painter } from '../../src/cli/colour.js';
import { statusCommand } from '../../src/cli/status.js';
import { keysDocumentSchema, renderStatus } from '../../src/cli/status-view.js';
import { captureIo } from './io.js';

const TOKEN = 'admin-token-0123456789abcdef';
const NOW = '2026-12-01T10:00:00.000Z';
const later = (ms: number) => new Date(Date.parse(NOW) + ms).toISOString();

const DOC = {
  now: NOW,
  upstreams: [
    {
      name: 'openai',
      prefix: '/v1',
      usable: 3,
      size: 4,
      waiting: 2,
      keys: [
        {
          name: 'openai-1', fingerprint: 'ab12cd34', masked: 'sk-…wxyz', group: null, state: 'ok', reason: null, until: null, leftMs: 0,
          models: [{ model: 'gpt-4o', state: 'cooling', reason: 'rate_limited', until: later(900), leftMs: 900 }],
          inflight: 2, requests: 1234, successes: 1200, rateLimited: 34, outOfCredit: 0, serverErrors: 0, tokensIn: 1_250_000, tokensOut: 300,
          perMinute: { requests: 10, rateLimited: 1 },
          headroom: [{ model: 'gpt-4o', requests: { limit: 500, remaining: 480, resetAt: later(20_000) }, tokens: { limit: 30_000, remaining: 29_000, resetAt: later(1000) } }],
        },
        { name: 'openai-2', fingerprint: 'ef56ab78', masked: 'sk-…abcd', group: 'org-a', state: 'cooling', reason: 'out_of_credit', until: later(3_540_000), leftMs: 3_540_000, models: [], inflight: 0, requests: 5, successes: 4, rateLimited: 0, outOfCredit: 1, serverErrors: 0, tokensIn: 10, tokensOut: 2, headroom: [] },
        { name: 'openai-3', fingerprint: '0011aabb', masked: '****', group: null, state: 'disabled', reason: 'unauthorized', until: later(86_400_000), leftMs: 86_400_000, models: [], inflight: 0, requests: 1, successes: 0, rateLimited: 0, outOfCredit: 0, serverErrors: 0, tokensIn: 0, tokensOut: 0, headroom: [] },
        { name: 'openai-4', fingerprint: '99887766', masked: '****', group: null, state: 'ok', reason: null, until: null, leftMs: 0, models: [{ model: 'o1', state: 'unavailable', reason: 'model_unavailable', until: later(3_600_000), leftMs: 3_600_000 }], inflight: 0, requests: 0, successes: 0, rateLimited: 0, outOfCredit: 0, serverErrors: 0, tokensIn: 0, tokensOut: 0, headroom: [] },
      ],
    },
  ],
};

interface FakeAdmin {
  readonly url: string;
  readonly port: number;
  readonly seen: IncomingHttpHeaders[];
  readonly paths: string[];
  answer: { status: number; body: string };
}

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

async function fakeAdmin(host = '127.0.0.1'): Promise<FakeAdmin> {
  const state: FakeAdmin = { url: '', port: 0, seen: [], paths: [], answer: { status: 200, body: JSON.stringify(DOC) } };
  server = createServer((req, res) => {
    state.seen.push(req.headers);
    state.paths.push(req.url ?? '');
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"code":"keypool_admin_unauthorized"}}');
      return;
    }
    res.writeHead(state.answer.status, { 'content-type': 'application/json' }).end(state.answer.body);
  });
  await new Promise<void>((r) => server!.listen(0, host, r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return Object.assign(state, { url: `http://127.0.0.1:${addr.port}`, port: addr.port });
}

function rowOf(out: string, first: string): string[] {
  return (out.split('\n').find((l) => l.trim().split(/\s+/)[0] === first) ?? '').trim().split(/\s{2,}/);
}

describe('keypool status', () => {
  it('prints a row per key and per model held back, from --url with --token', async () => {
    const admin = await fakeAdmin();
    const io = captureIo();
    expect(await statusCommand.run(['--url', admin.url, '--token', TOKEN], io)).toBe(0);
    const out = io.stdout();
    expect(admin.paths).toEqual(['/admin/keys']);
    expect(out).toContain('openai /v1: 3/4 key(s) usable, 2 waiting');
    expect(out).toMatch(/KEY\s+STATE\s+REASON\s+LEFT\s+IN FLIGHT\s+REQUESTS\s+429s\s+TOKENS IN\/OUT\s+HEADROOM/);
    expect(rowOf(out, 'openai-1')).toEqual(['openai-1', 'ok', '2', '1.2k', '34', '1.3M/300', 'gpt-4o 480/500 req (20s) 29k/30k tok (1s)']);
    expect(rowOf(out, 'gpt-4o')).toEqual(['gpt-4o', 'cooling', 'rate_limited', '900ms']);
    expect(rowOf(out, 'openai-2')).toEqual(['openai-2', 'cooling', 'out_of_credit', '59m00s', '0', '5', '0', '10/2']);
    expect(rowOf(out, 'openai-3')).toEqual(['openai-3', 'disabled', 'unauthorized', '24h00m', '0', '1', '0', '0/0']);
    expect(rowOf(out, 'o1')).toEqual(['o1', 'unavailable', 'model_unavailable', '1h00m']);
    // No colour when stdout is not a terminal; the token is never printed.
    expect(out).not.toContain('\u001b[');
    expect(out + io.stderr()).not.toContain(TOKEN);
  });

  it('paints states on a terminal, unless NO_COLOR is set', async () => {
    const admin = await fakeAdmin();
    const tty = captureIo({ KEYPOOL_ADMIN_TOKEN: TOKEN }, true);
    expect(await statusCommand.run(['--url', admin.url], tty)).toBe(0);
    expect(tty.stdout()).toContain('\u001b[31mdisabled\u001b[39m');
    expect(tty.stdout()).toContain('\u001b[32mok\u001b[39m');
    const noColour = captureIo({ KEYPOOL_ADMIN_TOKEN: TOKEN, NO_COLOR: '1' }, true);
    expect(await statusCommand.run(['--url', admin.url], noColour)).toBe(0);
    expect(noColour.stdout()).not.toContain('\u001b[');
    // NO_COLOR set but empty does not count (no-color.org).
    const empty = captureIo({ KEYPOOL_ADMIN_TOKEN: TOKEN, NO_COLOR: '' }, true);
    await statusCommand.run(['--url', admin.url], empty);
    expect(empty.stdout()).toContain('\u001b[');
  });

  it('--json prints the answer as it is', async () => {
    const admin = await fakeAdmin();
    const io = captureIo({ KEYPOOL_ADMIN_TOKEN: TOKEN });
    expect(await statusCommand.run(['--url', admin.url, '--json'], io)).toBe(0);
    expect(JSON.parse(io.stdout())).toEqual(DOC);
  });

  it('finds keypool where the config and KEYPOOL_* say it listens, with admin.token from the config', async () => {
    const admin = await fakeAdmin();
    const dir = mkdtempSync(join(tmpdir(), 'kp-status-'));
    const file = join(dir, 'keypool.yaml');
    // A key variable this shell lacks does not matter: only the address and the token are read.
    writeFileSync(file, 'server: { host: 0.0.0.0, port: 1 }\nadmin: { token: "${ADMIN_T}" }\nupstreams: [{ name: a, baseUrl: "http://127.0.0.1:9/v1", keys: ["${UNSET_KEY}"] }]\n');
    const io = captureIo({ KEYPOOL_CONFIG: file, KEYPOOL_PORT: String(admin.port), ADMIN_T: TOKEN });
    expect(await statusCommand.run([], io)).toBe(0);
    expect(admin.seen[0]?.authorization).toBe(`Bearer ${TOKEN}`);
    // --token beats the environment, which beats the config.
    const io2 = captureIo({ KEYPOOL_CONFIG: file, KEYPOOL_PORT: String(admin.port), ADMIN_T: TOKEN, KEYPOOL_ADMIN_TOKEN: 'env-token' });
    expect(await statusCommand.run([], io2)).toBe(1);
    expect(admin.seen[1]?.authorization).toBe('Bearer env-token');
  });

  it('says so when the token is missing or refused, without printing it', async () => {
    const admin = await fakeAdmin();
    const none = captureIo();
    expect(await statusCommand.run(['--url', admin.url], none)).toBe(1);
    expect(none.stderr()).toContain('needs an admin token (401): pass --token or set KEYPOOL_ADMIN_TOKEN');
    expect(admin.seen[0]?.authorization).toBeUndefined();
    const wrong = captureIo();
    expect(await statusCommand.run(['--url', admin.url, '--token', 'wrong-token-123456'], wrong)).toBe(1);
    expect(wrong.stderr()).toContain('refused the admin token (401)');
    expect(wrong.stderr()).not.toContain('wrong-token-123456');
  });

  it('says so when nothing listens, when there is no admin API, and when the answer is not a key table', async () => {
    const admin = await fakeAdmin();
    const port = admin.port;
    await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
    const gone = captureIo();
    expect(await statusCommand.run(['--url', `http://127.0.0.1:${port}`, '--token', TOKEN], gone)).toBe(1);
    expect(gone.stderr()).toContain(`cannot reach keypool at http://127.0.0.1:${port} (ECONNREFUSED); is it running?`);

    const again = await fakeAdmin();
    for (const [answer, message] of [
      [{ status: 404, body: '{}' }, 'not found (404): is this keypool, and a version with the admin API?'],
      [{ status: 500, body: '{}' }, 'answered 500'],
      [{ status: 200, body: '<html>' }, 'did not answer JSON'],
      [{ status: 200, body: '{"upstreams":"no"}' }, 'answered JSON that is not a key table'],
    ] as const) {
      again.answer = answer;
      const io = captureIo({ KEYPOOL_ADMIN_TOKEN: TOKEN });
      expect(await statusCommand.run(['--url', again.url], io)).toBe(1);
      expect(io.stderr()).toContain(message);
    }
  });

  it('refuses a bad --url with a usage error', async () => {
    await expect(statusCommand.run(['--url', 'ftp://x'], captureIo())).rejects.toThrow('--url: expected an http:// or https:// address');
    await expect(statusCommand.run(['--url', 'http://u:p@127.0.0.1:1'], captureIo())).rejects.toThrow('put the token in --token');
  });
});

describe('renderStatus', () => {
  it('takes any JSON the schema lets through without throwing, and stays within its rows', () => {
    const bucket = fc.option(fc.record({ limit: fc.anything(), remaining: fc.anything(), resetAt: fc.anything() }), { nil: null });
    const key = fc.record(
      {
        name: fc.string({ maxLength: 20 }),
        state: fc.oneof(fc.constantFrom('ok', 'cooling', 'unavailable', 'disabled'), fc.anything()),
        reason: fc.anything(),
        until: fc.anything(),
        leftMs: fc.anything(),
        inflight: fc.anything(),
        requests: fc.oneof(fc.double(), fc.integer()),
        tokensIn: fc.anything(),
        models: fc.oneof(fc.array(fc.record({ model: fc.string(), state: fc.anything(), leftMs: fc.anything() })), fc.anything()),
        headroom: fc.oneof(fc.array(fc.record({ model: fc.anything(), requests: bucket, tokens: bucket })), fc.anything()),
      },
      { requiredKeys: ['name'] },
    );
    fc.assert(
      fc.property(fc.record({ now: fc.anything(), upstreams: fc.array(fc.record({ name: fc.string({ maxLength: 20 }), keys: fc.array(key, { maxLength: 5 }) }), { maxLength: 3 }) }), (raw) => {
        const parsed = keysDocumentSchema.safeParse(raw);
        if (!parsed.success) return;
        const lines = renderStatus(parsed.data, painter(false));
        const rows = parsed.data.upstreams.reduce((n, u) => n + 2 + u.keys.reduce((m, k) => m + 1 + (k.models?.length ?? 0), 0), 0);
        expect(lines.length).toBeLessThanOrEqual(rows + parsed.data.upstreams.length);
      }),
    );
  });
});
