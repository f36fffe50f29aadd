// @ts-check
// Redis store vs memory store (issue 5): the same keypool, once with `state.redis` and once without, in
// interleaved rounds at the same load, plus how many Redis round trips and commands each attempt costs. Run with a plain
// pool (all 200) and with half the keys answering 429 (every rotation is a shared fact).
// Run: npm run bench:store   (needs redis-server; BENCH_QUICK=1 for a short check)
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { CHAT_BODY, CHAT_PATH, jsonHeaders } from './lib/common.mjs';
import { runLoad } from './lib/load.mjs';
import { freePort, machineInfo, startNode, stopAll } from './lib/procs.mjs';
import { fmt, median, percentile } from './lib/stats.mjs';
import { MAIN, ROOT, assertBuilt, startUpstream } from './lib/targets.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = QUICK ? 2 : 4;
const ROUND_S = QUICK ? 2 : 5;
const CONNECTIONS = 50;
const KEYS = 10;

async function main() {
  assertBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'keypool-store-'));
  const redisPort = await freePort();
  const redisProc = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const redis = new Redis(`redis://127.0.0.1:${redisPort}`, { lazyConnect: true, maxRetriesPerRequest: 2 });
  /** @type {string[]} */
  const rows = [];
  try {
    await waitForRedis(redis, redisPort);
    for (const mode of ['plain', 'rotating', 'maxConcurrent']) {
      const keys = Array.from({ length: KEYS }, (_, i) => `sk-store-${mode}-${i}`);
      const behaviours = Object.fromEntries(
        mode === 'rotating' ? keys.filter((_, i) => i % 2 === 1).map((k) => [k, { kind: 'rate_limit', style: 'retry-after', ms: 1000 }]) : [],
      );
      const keysJson = join(dir, `${mode}.json`);
      writeFileSync(keysJson, JSON.stringify(behaviours));
      // Headers on every answer, as OpenAI sends them; the limit is far enough never to be reached.
      const up = await startUpstream({ latencyMs: 0, keysJson, name: `store-upstream-${mode}`, rateLimit: '1000000000/60000' });
      const keyList = mode === 'maxConcurrent' ? `[${keys.map((k) => `{ key: ${k}, maxConcurrent: 1000 }`).join(', ')}]` : `[${keys.join(', ')}]`;
      const targets = [];
      for (const store of ['memory', 'redis']) {
        const port = await freePort();
        const file = join(dir, `${mode}-${store}.yaml`);
        writeFileSync(
          file,
          [
            `server: { host: 127.0.0.1, port: ${port} }`,
            'log: { level: warn }',
            store === 'redis' ? `state: { redis: { url: "redis://127.0.0.1:${redisPort}", prefix: "${mode}:" } }` : '',
            'upstreams:',
            '  - name: bench',
            `    baseUrl: ${up.url}/v1`,
            `    keys: ${keyList}`,
            '',
          ].join('\n'),
        );
        const proc = await startNode({ name: `store-${mode}-${store}`, args: [MAIN, 'serve', '--config', file], ready: { healthz: `http://127.0.0.1:${port}` }, cwd: ROOT });
        targets.push({ store, proc });
      }
      /** @type {Record<string, { rps: number, cpu: number, p99: number }[]>} */
      const runs = { memory: [], redis: [] };
      for (const t of targets) await runLoad({ url: t.proc.url, path: CHAT_PATH, headers: jsonHeaders('x'), body: CHAT_BODY, connections: CONNECTIONS, duration: 1 });
      let commands = 0;
      let scripts = 0;
      let redisRequests = 0;
      for (let r = 0; r < ROUNDS; r++) {
        for (const t of targets) {
          const before = t.store === 'redis' ? await totalCommands(redis) : 0;
          const scriptsBefore = t.store === 'redis' ? await scriptCalls(redis) : 0;
          const res = await runLoad({ url: t.proc.url, path: CHAT_PATH, headers: jsonHeaders('x'), body: CHAT_BODY, connections: CONNECTIONS, duration: ROUND_S, pid: t.proc.pid, latencies: true });
          if (t.store === 'redis') {
            // INFO itself is one command; subtract it (and the second INFO of scriptCalls).
            commands += (await totalCommands(redis)) - before - 2;
            scripts += (await scriptCalls(redis)) - scriptsBefore;
            redisRequests += res.completed;
          }
          runs[t.store].push({ rps: res.rps, cpu: res.cpuUs / res.completed, p99: res.lat ? percentile(res.lat, 99) : NaN });
        }
      }
      const ratio = median(runs.redis.map((x, i) => x.rps / runs.memory[i].rps));
      rows.push(
        `| ${mode} | ${fmt(median(runs.memory.map((x) => x.rps)))} | ${fmt(median(runs.redis.map((x) => x.rps)))} | ${fmt(ratio, 3)} | ${fmt(median(runs.memory.map((x) => x.cpu)), 1)} / ${fmt(median(runs.redis.map((x) => x.cpu)), 1)} | ${fmt(median(runs.memory.map((x) => x.p99)), 2)} / ${fmt(median(runs.redis.map((x) => x.p99)), 2)} | ${fmt(scripts / Math.max(1, redisRequests), 3)} | ${fmt(commands / Math.max(1, redisRequests), 1)} |`,
      );
      for (const t of targets) await t.proc.stop();
      await up.stop();
    }
  } finally {
    redis.disconnect();
    redisProc.kill('SIGKILL');
    await stopAll();
  }
  const m = machineInfo();
  const table = [
    `# keypool: Redis store vs memory store${QUICK ? ' (BENCH_QUICK)' : ''}`,
    '',
    `- date: ${new Date().toISOString()}; node ${process.version}; ${m.nproc} cores, ${m.cpu}`,
    `- ${CONNECTIONS} connections, 0 ms upstream sending x-ratelimit-* headers (limit never reached), ${KEYS} keys; ${ROUNDS} interleaved rounds of ${ROUND_S} s; medians.`,
    '- "rotating": keys 2, 4, .. answer 429 with Retry-After: 1. "maxConcurrent": every key has maxConcurrent: 1000 (never reached), so every attempt waits for the Redis take (the worst case); otherwise attempts far from every limit are counted without waiting.',
    '- Round trips per request: Lua script calls (EVALSHA/EVAL) per request answered, during the redis rounds; every state change of the ledger is one script.',
    '- Commands per request: every command the Redis server ran, those inside scripts included.',
    '',
    '| pool | memory req/s | redis req/s | redis / memory | CPU µs per request (memory / redis) | p99 ms (memory / redis) | Redis round trips per request | Redis commands per request |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results', QUICK ? 'store-quick.md' : 'store.md'), table);
  process.stdout.write(`${table}\n`);
}

/**
 * Waits until redis-server accepts connections, then connects the client once.
 * @param {Redis} redis
 * @param {number} port
 */
async function waitForRedis(redis, port) {
  for (let i = 0; i < 50; i++) {
    const open = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (open) {
      await redis.connect();
      return;
    }
    await sleep(100);
  }
  throw new Error('redis-server did not start (is it installed? apt-get install redis-server)');
}

/** Script calls so far: each one is a round trip from a replica. @param {Redis} redis */
async function scriptCalls(redis) {
  const info = await redis.info('commandstats');
  let n = 0;
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) n += Number(m[1]);
  return n;
}

/** @param {Redis} redis */
async function totalCommands(redis) {
  const info = await redis.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? NaN);
}

main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
