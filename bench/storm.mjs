// @ts-check
// "Rate-limit storm": N keys, each allowing R requests per window at the fake upstream; M agents (one of
// them bursty) offer 50 %, 90 % and 150 % of the pool's combined capacity through keypool, once per
// strategy. Prints goodput against min(demand, capacity), failed upstream attempts (429s) per success,
// client-visible errors, queue wait and each agent's share of its fair share. Writes bench/results/storm.md.
//
// Run: npm run bench:storm   (BENCH_QUICK=1 for a short harness check)
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { freePort, machineInfo, startNode, stopAll } from './lib/procs.mjs';
import { percentile, sortedCopy, fmt } from './lib/stats.mjs';
import { MAIN, ROOT, assertBuilt } from './lib/targets.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const KEYS = 8;
const PER_WINDOW = 10;
const WINDOW_MS = 1000;
const CAPACITY = (KEYS * PER_WINDOW * 1000) / WINDOW_MS; // requests per second
const AGENTS = 6;
const BURST_EVERY_MS = 2000;
const LEVELS = [0.5, 0.9, 1.5];
const LEVEL_MS = QUICK ? 4000 : 10_000;
/** Longest the bench waits for stragglers after a level; keypool's maxWaitMs is below it. */
const DRAIN_MS = 15_000;
const STRATEGIES = QUICK ? ['round_robin', 'headroom'] : ['round_robin', 'least_inflight', 'random', 'weighted', 'fill_first', 'headroom'];
const BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'storm' }] });

/**
 * @typedef {{ agent: number, sentAt: number, doneAt: number, status: number, attempts: number, waitMs: number }} Sample
 */

async function main() {
  assertBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'keypool-storm-'));
  const keys = Array.from({ length: KEYS }, (_, i) => `sk-storm-${String(i + 1).padStart(2, '0')}-${'x'.repeat(20)}`);
  /** @type {string[]} */
  const rows = [];
  try {
    for (const strategy of STRATEGIES) {
      const upstream = await startNode({
        name: `storm-upstream-${strategy}`,
        args: [MAIN, 'fake-upstream', '--host', '127.0.0.1', '--port', '0', '--latency-ms', '20', '--no-record', '--rate-limit', `${PER_WINDOW}/${WINDOW_MS}`],
        ready: 'line',
        cwd: ROOT,
      });
      const port = await freePort();
      const config = join(dir, `${strategy}.yaml`);
      writeFileSync(
        config,
        [
          `server: { host: 127.0.0.1, port: ${port} }`,
          'log: { level: warn }',
          'upstreams:',
          '  - name: storm',
          `    baseUrl: ${upstream.url}/v1`,
          `    strategy: ${strategy}`,
          `    keys: [${keys.join(', ')}]`,
          'retry: { maxRetries: 3, maxWaitMs: 10000, timeoutMs: 60000 }',
          'queue: { maxSize: 5000 }',
          '',
        ].join('\n'),
      );
      const keypool = await startNode({
        name: `storm-keypool-${strategy}`,
        args: [MAIN, 'serve', '--config', config],
        ready: { healthz: `http://127.0.0.1:${port}` },
        cwd: ROOT,
      });
      try {
        for (const level of LEVELS) {
          const samples = await storm(keypool.url, level);
          rows.push(row(strategy, level, samples));
          process.stderr.write(`storm: ${strategy} at ${level * 100}% done\n`);
          await sleep(WINDOW_MS);
        }
      } finally {
        await keypool.stop();
        await upstream.stop();
      }
    }
  } finally {
    await stopAll();
  }

  const m = machineInfo();
  const table = [
    `# keypool rate-limit storm${QUICK ? ' (BENCH_QUICK)' : ''}`,
    '',
    `- date: ${new Date().toISOString()}; node ${process.version}; ${m.nproc ?? '?'} cores, ${m.cpu ?? ''}`,
    `- ${KEYS} keys x ${PER_WINDOW} requests per ${WINDOW_MS} ms at the fake upstream (capacity ${CAPACITY} req/s, 20 ms latency);`,
    `  ${AGENTS} agents (agent 6 bursty: its share every ${BURST_EVERY_MS} ms at once), ${LEVEL_MS / 1000} s per level; keypool retry.maxWaitMs 10 s.`,
    '- goodput: successes finished within the level / min(demand, capacity); 429s/success: failed upstream attempts per success;',
    '  fair share: each agent\'s successes / its max-min fair share (min..max over agents; the target is 0.8..1.2 at 150 %).',
    '',
    '| strategy | demand | goodput | 429s / success | client errors | queue wait p50 / p99 ms | agent share min..max | bursty agent share |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, QUICK ? 'storm-quick.md' : 'storm.md'), table);
  process.stdout.write(`${table}\n`);
}

/**
 * Offers `level` x capacity for LEVEL_MS from AGENTS agents (open loop), then waits for stragglers.
 * @param {string} url
 * @param {number} level
 * @returns {Promise<{ samples: Sample[], sent: number[] }>}
 */
async function storm(url, level) {
  const dispatcher = new Agent({ connections: 2048, headersTimeout: 0, bodyTimeout: 0 });
  const perAgentRate = (level * CAPACITY) / AGENTS; // req/s
  /** @type {Sample[]} */
  const samples = [];
  const sent = Array(AGENTS).fill(0);
  /** @type {Promise<void>[]} */
  const inflight = [];
  const t0 = performance.now();

  const fire = (/** @type {number} */ agent) => {
    sent[agent]++;
    const sentAt = performance.now() - t0;
    const p = request(`${url}/v1/chat/completions`, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/json', authorization: 'Bearer agent', 'x-agent-id': `agent-${agent + 1}` },
      body: BODY,
    }).then(
      async (res) => {
        await res.body.dump();
        samples.push({
          agent,
          sentAt,
          doneAt: performance.now() - t0,
          status: res.statusCode,
          attempts: Number(res.headers['x-keypool-attempts'] ?? 1),
          waitMs: Number(res.headers['x-keypool-wait-ms'] ?? 0),
        });
      },
      () => {
        samples.push({ agent, sentAt, doneAt: performance.now() - t0, status: 0, attempts: 0, waitMs: 0 });
      },
    );
    inflight.push(p);
  };

  /** @type {Promise<void>[]} */
  const agents = [];
  for (let a = 0; a < AGENTS; a++) {
    const bursty = a === AGENTS - 1;
    agents.push(
      (async () => {
        if (bursty) {
          const perBurst = Math.round((perAgentRate * BURST_EVERY_MS) / 1000);
          for (let t = 0; t < LEVEL_MS; t += BURST_EVERY_MS) {
            await sleepUntil(t0 + t);
            for (let i = 0; i < perBurst; i++) fire(a);
          }
        } else {
          const gap = 1000 / perAgentRate;
          // Stagger agents so their requests do not all land on the same tick.
          for (let t = (gap * a) / AGENTS; t < LEVEL_MS; t += gap) {
            await sleepUntil(t0 + t);
            fire(a);
          }
        }
      })(),
    );
  }
  await Promise.all(agents);
  await Promise.race([Promise.all(inflight), sleep(DRAIN_MS)]);
  await dispatcher.destroy();
  return { samples, sent };
}

/** @param {number} at performance.now() target */
async function sleepUntil(at) {
  const d = at - performance.now();
  if (d > 0) await sleep(d);
}

/**
 * @param {string} strategy
 * @param {number} level
 * @param {{ samples: Sample[], sent: number[] }} r
 */
function row(strategy, level, r) {
  const { samples, sent } = r;
  const seconds = LEVEL_MS / 1000;
  const demand = (sent.reduce((a, b) => a + b, 0) / seconds);
  const ok = samples.filter((s) => s.status === 200);
  const inWindow = ok.filter((s) => s.doneAt <= LEVEL_MS);
  const goodput = inWindow.length / seconds;
  const share = goodput / Math.min(demand, CAPACITY);
  const attempts = samples.reduce((a, s) => a + s.attempts, 0);
  const failedAttempts = attempts - ok.length;
  const errors = samples.length - ok.length + (sent.reduce((a, b) => a + b, 0) - samples.length);
  const waits = sortedCopy(ok.map((s) => s.waitMs));
  const fair = fairShares(sent.map((n) => n / seconds), CAPACITY);
  const shares = sent.map((_, a) => inWindow.filter((s) => s.agent === a).length / seconds / fair[a]);
  const minShare = Math.min(...shares);
  const maxShare = Math.max(...shares);
  return `| ${strategy} | ${Math.round(level * 100)} % (${fmt(demand)} req/s) | ${fmt(share * 100, 1)} % | ${fmt(failedAttempts / Math.max(1, ok.length), 3)} | ${errors} | ${fmt(percentile(waits, 50))} / ${fmt(percentile(waits, 99))} | ${fmt(minShare, 2)}..${fmt(maxShare, 2)} | ${fmt(shares[AGENTS - 1], 2)} |`;
}

/**
 * Max-min fair shares of `capacity` among `demands` (water filling).
 * @param {number[]} demands
 * @param {number} capacity
 */
function fairShares(demands, capacity) {
  const share = Array(demands.length).fill(0);
  let left = capacity;
  let open = demands.map((_, i) => i);
  while (open.length > 0 && left > 1e-9) {
    const each = left / open.length;
    const satisfied = open.filter((i) => demands[i] - share[i] <= each);
    if (satisfied.length === 0) {
      for (const i of open) share[i] += each;
      break;
    }
    for (const i of satisfied) {
      left -= demands[i] - share[i];
      share[i] = demands[i];
    }
    open = open.filter((i) => !satisfied.includes(i));
  }
  return share;
}

main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
