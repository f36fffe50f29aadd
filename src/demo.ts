// `keypool demo`: keypool in front of the built-in fake upstream, with a few keys on small rate limits
// (one of them out of credit), and a burst of agent traffic. Prints rotation as it happens and a summary.
// Needs no keys and no network beyond loopback.
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { buildApp } from './app.js';
import { loadConfigObject } from './config/load.js';
import { startFakeUpstream } from './fake-upstream/server.js';
import type { PoolEvent } from './keys/pool.js';
import { createLogger } from './logger.js';

const DEMO_KEYS = ['sk-demo-alpha-0001', 'sk-demo-bravo-0002', 'sk-demo-charlie-0003', 'sk-demo-delta-0004'];
const NAMES = ['alpha', 'bravo', 'charlie', 'delta'];
/** Each fake key allows this many requests per window, so a burst has to rotate and wait. */
const DEMO_RATE = { requests: 3, windowMs: 1000 };

export async function runDemo(args: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { requests: { type: 'string', default: '30' }, concurrency: { type: 'string', default: '6' } },
    strict: true,
  });
  const total = Math.min(10_000, Math.max(1, Number(values.requests) || 30));
  const concurrency = Math.min(100, Math.max(1, Number(values.concurrency) || 6));

  const upstream = await startFakeUpstream({
    rateLimit: DEMO_RATE,
    latencyMs: 40,
    record: false,
    // delta is out of credit: keypool benches it for an hour after its first answer.
    keys: { [DEMO_KEYS[3]!]: { kind: 'insufficient_quota' } },
  });
  // bravo's first answer is a 429 whatever its window says, so every run shows a rotation; later 429s
  // are rarer, since keypool reads each answer's x-ratelimit-* headers and steers away from spent keys.
  upstream.script(DEMO_KEYS[1]!, { kind: 'rate_limit', style: 'retry-after', ms: 1500 });
  const started = Date.now();
  const at = (): string => `${((Date.now() - started) / 1000).toFixed(2).padStart(6)}s`;
  const onPoolEvent = (e: PoolEvent): void => {
    if (e.type === 'cooldown' && e.extended) {
      const ms = e.until - Date.now();
      const why = e.reason === 'out_of_credit' ? 'out of credit' : 'rate-limited (429)';
      out(`${at()}  ↻ ${e.key.padEnd(8)} ${why}; cooling ${formatMs(ms)}, rotating to the next key`);
    } else if (e.type === 'disabled') {
      out(`${at()}  ✗ ${e.key} rejected (${e.reason}); disabled`);
    }
  };

  const { config } = loadConfigObject(
    {
      server: { port: 0 },
      log: { level: 'silent' },
      upstreams: [
        {
          name: 'demo',
          baseUrl: `${upstream.url}/v1`,
          keys: DEMO_KEYS.map((key, i) => ({ name: NAMES[i], key })),
        },
      ],
      retry: { maxRetries: 3, maxWaitMs: 10_000, timeoutMs: 30_000 },
    },
    {},
  );
  const app = await buildApp({ config, logger: createLogger('silent'), onPoolEvent });
  try {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.address();
    const base = typeof addr === 'object' && addr !== null ? `http://127.0.0.1:${addr.port}` : '';
    out(`keypool demo: ${DEMO_KEYS.length} fake keys (${DEMO_RATE.requests} requests/s each; delta is out of credit)`);
    out(`proxy ${base}/v1 -> fake upstream ${upstream.url}/v1; ${total} chat completions, ${concurrency} at a time\n`);

    let next = 0;
    let ok = 0;
    let failed = 0;
    let extraAttempts = 0;
    const agent = async (): Promise<void> => {
      while (next < total) {
        const n = ++next;
        const res = await request(`${base}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer any-agent-token' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `task ${n}` }] }),
        });
        await res.body.dump();
        const attempts = Number(res.headers['x-keypool-attempts'] ?? 1);
        extraAttempts += Math.max(0, attempts - 1);
        if (res.statusCode === 200) ok++;
        else failed++;
        const key = String(res.headers['x-keypool-key'] ?? '-');
        const note = attempts > 1 ? `  (${attempts} attempts)` : '';
        out(`${at()}  #${String(n).padStart(3)} ${res.statusCode} via ${key.padEnd(8)}${note}`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, agent));

    const pool = app.pools.get('demo');
    const room = app.rooms.get('demo');
    out('\nsummary');
    out(`  requests ${total}, succeeded ${ok}, client-visible errors ${failed}, rotations ${extraAttempts}, time ${at().trim()}`);
    out(`  waited for a free key: ${room?.metrics.deferred ?? 0} request(s), ${room?.metrics.waitMsTotal ?? 0} ms in all`);
    out('  key       attempts  ok   429s  out-of-credit');
    for (const s of pool?.states() ?? []) {
      const st = s.stats;
      out(`  ${s.key.name.padEnd(9)} ${String(st.attempts).padStart(8)} ${String(st.successes).padStart(3)} ${String(st.rateLimited).padStart(6)} ${String(st.outOfCredit).padStart(14)}`);
    }
    out('\nPoint an agent at it: OPENAI_BASE_URL=http://127.0.0.1:8787/v1 after `npm start` with OPENAI_API_KEYS set.');
    return failed === 0 ? 0 : 1;
  } finally {
    await app.close();
    await upstream.close();
  }
}

function formatMs(ms: number): string {
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(1)}h`;
  if (ms >= 60_000) return `${(ms / 60_000).toFixed(1)}m`;
  return `${(Math.max(0, ms) / 1000).toFixed(2)}s`;
}
