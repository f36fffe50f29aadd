#!/usr/bin/env node
// @ts-check
// `npm run bench:profile`: where keypool's CPU goes. Runs the throughput load (50 connections, 0 ms
// upstream, POST /v1/chat/completions) against `dist/src/main.js serve` started under
// `node --cpu-prof`, and against the honest floor the same way, then sums each profile's self time
// by function and by group (Fastify routing, undici, Node streams, pino, keypool's own modules...).
// Writes the summary (not the raw .cpuprofile) to bench/results/profile.md.
//
//   BENCH_QUICK=1    shorter load (harness check); writes results/profile-quick.md
//   PROFILE_KEEP=DIR keep the raw .cpuprofile files in DIR
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHAT_BODY, CHAT_PATH, jsonHeaders, keyNames } from './lib/common.mjs';
import { runLoad } from './lib/load.mjs';
import { machineInfo } from './lib/machine.mjs';
import { cpuSplitMicros, foreignCpuMeter, stopAll } from './lib/procs.mjs';
import { summarize } from './lib/profile-summary.mjs';
import { fmt } from './lib/stats.mjs';
import { assertBuilt, ROOT, startFloor, startKeypool, startUpstream } from './lib/targets.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const WARM_S = QUICK ? 1 : 3;
const LOAD_S = QUICK ? 3 : 15;
const CONNECTIONS = 50;
/** Functions listed per profile. */
const TOP = 25;

async function main() {
  assertBuilt();
  const log = (/** @type {string} */ m) => process.stderr.write(`${m}\n`);
  const dir = process.env.PROFILE_KEEP ? resolve(process.env.PROFILE_KEEP) : mkdtempSync(join(tmpdir(), 'keypool-profile-'));
  mkdirSync(dir, { recursive: true });
  const keys = keyNames('sk-plain', 10);
  const keysFile = join(dir, 'plain10.keys');
  writeFileSync(keysFile, keys.join('\n') + '\n', { mode: 0o600 });
  const startedAt = new Date();
  const up = await startUpstream({ latencyMs: 0 });
  /** @type {{ name: string, rps: number, cpuPerReq: number, userPerReq: number, sysPerReq: number, foreign: number, summary: ReturnType<typeof summarize> }[]} */
  const results = [];
  try {
    for (const name of ['keypool', 'floor']) {
      const proc =
        name === 'keypool'
          ? await startKeypool({ dir, name: 'keypool-profile', upstreamUrl: up.url, keysFile, cpuProfDir: dir })
          : await startFloor({ origin: up.url, keys, name: 'floor-profile', cpuProfDir: dir });
      const load = (/** @type {number} */ s) =>
        runLoad({ url: proc.url, path: CHAT_PATH, headers: jsonHeaders('sk-plain-0'), body: CHAT_BODY, connections: CONNECTIONS, duration: s, pid: proc.pid });
      await load(WARM_S);
      const foreign = foreignCpuMeter();
      // V8's profile clock is the monotonic clock process.hrtime reads, in µs: the window is comparable.
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      const split0 = cpuSplitMicros(proc.pid);
      const r = await load(LOAD_S);
      const split1 = cpuSplitMicros(proc.pid);
      const toUs = Number(process.hrtime.bigint() / 1000n);
      const f = foreign();
      log(`profile: ${name} ${fmt(r.rps)} req/s, ${fmt(r.cpuUs / r.completed, 1)} µs CPU/req, other processes ${fmt(f, 2)} cores`);
      await proc.stop(); // SIGTERM: the process exits normally and --cpu-prof writes its profile
      const file = readdirSync(dir).find((f) => f.startsWith(proc.name) && f.endsWith('.cpuprofile'));
      if (!file) throw new Error(`${proc.name}: no .cpuprofile written in ${dir}`);
      results.push({ name, rps: r.rps, cpuPerReq: r.cpuUs / r.completed, userPerReq: (split1.user - split0.user) / r.completed, sysPerReq: (split1.sys - split0.sys) / r.completed, foreign: f, summary: summarize(JSON.parse(readFileSync(join(dir, file), 'utf8')), ROOT, { fromUs, toUs }) });
    }
  } finally {
    await stopAll();
    if (!process.env.PROFILE_KEEP) rmSync(dir, { recursive: true, force: true });
  }

  const m = machineInfo();
  const kp = /** @type {typeof results[number]} */ (results.find((r) => r.name === 'keypool'));
  const fl = /** @type {typeof results[number]} */ (results.find((r) => r.name === 'floor'));
  const groups = [...new Set([...kp.summary.groups.map((g) => g.group), ...fl.summary.groups.map((g) => g.group)])];
  const share = (/** @type {typeof kp} */ r, /** @type {string} */ g) => r.summary.groups.find((x) => x.group === g)?.share ?? 0;
  // µs per request of a group = its share of sampled busy time × the process's CPU per request (/proc).
  const perReq = (/** @type {typeof kp} */ r, /** @type {string} */ g) => share(r, g) * r.cpuPerReq;
  groups.sort((a, b) => perReq(kp, b) - perReq(kp, a));
  const lines = [
    `# Where the CPU goes: keypool vs the honest floor${QUICK ? ' (BENCH_QUICK)' : ''}`,
    '',
    `- date: ${startedAt.toISOString()}; keypool ${m.revision}; node ${m.node}, nproc ${m.nproc}, ${m.cpu}`,
    `- load: ${CONNECTIONS} connections, 0 ms fake upstream, POST ${CHAT_PATH}, ${WARM_S} s warm-up then ${LOAD_S} s measured, each process alone (keypool first, then the floor); only samples taken during the measured ${LOAD_S} s count (no start-up, warm-up or shutdown)`,
    `- keypool: ${fmt(kp.rps)} req/s, ${fmt(kp.cpuPerReq, 1)} µs CPU per request (/proc); floor: ${fmt(fl.rps)} req/s, ${fmt(fl.cpuPerReq, 1)} µs; other processes on the machine: ${fmt(kp.foreign, 2)} / ${fmt(fl.foreign, 2)} cores`,
    `- user / system (kernel) CPU per request from /proc: keypool ${fmt(kp.userPerReq, 1)} / ${fmt(kp.sysPerReq, 1)} µs, floor ${fmt(fl.userPerReq, 1)} / ${fmt(fl.sysPerReq, 1)} µs. Both make the same system calls per request (one read and one writev on each side, checked with strace), so the difference is mostly user time: JavaScript.`,
    `- method: \`node --cpu-prof\` (V8 sampling profiler); self time summed per function and per group of its source (URL); "µs/req" spreads the process's /proc CPU per request over the groups by their share of busy samples (idle excluded). Sampling adds some overhead of its own, alike for both. The sampler takes wall-clock samples, so time a process spends preempted inside a system call (writev, on a loaded machine) counts as that call's: read the socket I/O row against the /proc user/system split above.`,
    '',
    '## By group',
    '',
    '| group | keypool share of busy time | keypool µs/req | floor share | floor µs/req | keypool − floor µs/req |',
    '|---|---|---|---|---|---|',
    ...groups.map((g) => `| ${g} | ${fmt(100 * share(kp, g), 1)} % | ${fmt(perReq(kp, g), 1)} | ${fmt(100 * share(fl, g), 1)} % | ${fmt(perReq(fl, g), 1)} | ${fmt(perReq(kp, g) - perReq(fl, g), 1)} |`),
    `| **total** | 100 % | ${fmt(kp.cpuPerReq, 1)} | 100 % | ${fmt(fl.cpuPerReq, 1)} | ${fmt(kp.cpuPerReq - fl.cpuPerReq, 1)} |`,
    '',
  ];
  for (const r of [kp, fl]) {
    lines.push(
      `## Top ${TOP} functions by self time: ${r.name}`,
      '',
      '| self % | µs/req | function | where | group |',
      '|---|---|---|---|---|',
      ...r.summary.functions.slice(0, TOP).map((f) => `| ${fmt(100 * f.share, 1)} | ${fmt(f.share * r.cpuPerReq, 1)} | \`${f.name}\` | ${f.where} | ${f.group} |`),
      '',
    );
  }
  const out = join(ROOT, 'bench/results', QUICK ? 'profile-quick.md' : 'profile.md');
  writeFileSync(out, lines.join('\n'));
  process.stdout.write(lines.join('\n') + '\n');
  log(`profile: wrote ${out}`);
}

main().then(
  () => process.exit(0),
  async (err) => {
    console.error(err);
    await stopAll().catch(() => {});
    process.exit(1);
  },
);
