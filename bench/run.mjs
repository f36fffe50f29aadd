#!/usr/bin/env node
// @ts-check
// `npm run bench`: checks that the floor is a correct pass-through, starts a fake upstream, the honest
// floor and keypool, each in its own process, runs the scenarios, prints one markdown table and writes
// it to bench/results/. See bench/README.md.
//
//   --quick  (or BENCH_QUICK=1)  short runs (about two minutes) to check the harness; writes results/quick.md
//   --peers  (or BENCH_PEERS=1)  also run Portkey's gateway (installed on first use into bench/.peers)
//                                through the throughput, latency and streaming rows
//   BENCH_ONLY=a,b           run only these scenarios (throughput, latency, streaming, rotation,
//                            memory, scaling, hostile); writes results/partial.md
//   BENCH_CPU_PROF=DIR       start the throughput floor/keypool and the rotation keypools under --cpu-prof, profiles in DIR
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join, resolve } from 'node:path';
import { params, upstreamBehaviours } from './lib/common.mjs';
import { machineInfo } from './lib/machine.mjs';
import { machineBusyMicros, selfTreeMicros, stopAll } from './lib/procs.mjs';
import { checkFloor } from './lib/floor-check.mjs';
import { ensurePortkey, PORTKEY_VERSION } from './lib/peers.mjs';
import { renderReport } from './lib/report.mjs';
import { assertBuilt, ROOT, startUpstream } from './lib/targets.mjs';
import { hostile } from './scenarios/hostile.mjs';
import { latency } from './scenarios/latency.mjs';
import { memory } from './scenarios/memory.mjs';
import { rotation } from './scenarios/rotation.mjs';
import { scaling } from './scenarios/scaling.mjs';
import { streaming } from './scenarios/streaming.mjs';
import { throughput } from './scenarios/throughput.mjs';

/** The whole run may not take longer than this, whatever happens. */
const HARD_LIMIT_MS = 15 * 60_000;

const SCENARIOS = { throughput, latency, streaming, rotation, memory, scaling, hostile };
const FLAGS = new Set(['--quick', '--peers']);

async function main() {
  const args = process.argv.slice(2);
  for (const a of args) if (!FLAGS.has(a)) throw new Error(`unknown argument "${a}" (known: ${[...FLAGS].join(', ')})`);
  const quick = process.env.BENCH_QUICK === '1' || args.includes('--quick');
  const peers = process.env.BENCH_PEERS === '1' || args.includes('--peers');
  const only = (process.env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of only) if (!(name in SCENARIOS)) throw new Error(`BENCH_ONLY: unknown scenario "${name}" (known: ${Object.keys(SCENARIOS).join(', ')})`);
  const chosen = Object.entries(SCENARIOS).filter(([name]) => only.length === 0 || only.includes(name));
  const P = params(quick);
  const cpuProfDir = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });

  assertBuilt();
  const log = (/** @type {string} */ msg) => process.stderr.write(`${msg}\n`);
  // An incorrect floor would make every ratio meaningless: check it before measuring anything.
  await checkFloor(log);
  if (peers) ensurePortkey(log);
  // What else is using the cores: machine-wide busy CPU over one idle second before starting, and
  // over the run minus what this process and its children used.
  const idle0 = machineBusyMicros();
  await sleep(1_000);
  const busyBefore = (machineBusyMicros() - idle0) / 1e6;
  const startedAt = new Date();
  const machine0 = machineBusyMicros();
  const tree0 = selfTreeMicros();
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'keypool-bench-'));
  // Also on Ctrl-C / the hard limit, which leave through process.exit.
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const hardStop = setTimeout(() => {
    log(`bench: hard limit of ${HARD_LIMIT_MS / 60_000} minutes reached, stopping`);
    process.exit(2); // the exit handler in procs.mjs kills every child
  }, HARD_LIMIT_MS);
  hardStop.unref();

  /** @type {import('./lib/common.mjs').SectionResult[]} */
  const sections = [];
  /** @type {{ name: string, error: string }[]} */
  const failures = [];
  try {
    const behaviours = join(dir, 'behaviours.json');
    writeFileSync(behaviours, JSON.stringify(upstreamBehaviours(P)));
    const up0 = await startUpstream({ latencyMs: 0, keysJson: behaviours });
    /** @type {Map<string, string>} */
    const keyFiles = new Map();
    /** @type {import('./lib/common.mjs').Ctx} */
    const ctx = {
      P,
      dir,
      up0,
      cpuProfDir,
      log,
      peers,
      keysFile(name, prefix, n) {
        let file = keyFiles.get(name);
        if (!file) {
          file = join(dir, `${name}.keys`);
          writeFileSync(file, Array.from({ length: n }, (_, i) => `${prefix}-${i}`).join('\n') + '\n', { mode: 0o600 });
          keyFiles.set(name, file);
        }
        return file;
      },
    };
    log(`bench: ${quick ? 'quick' : 'full'} run${peers ? `, with Portkey ${PORTKEY_VERSION}` : ''}, upstream ${up0.url}, temp ${dir}`);
    for (const [name, fn] of chosen) {
      const s0 = performance.now();
      log(`bench: ${name}`);
      try {
        sections.push(await fn(ctx));
      } catch (err) {
        const e = /** @type {Error} */ (err);
        failures.push({ name, error: e.stack ?? String(e) });
        log(`bench: ${name} failed: ${e.stack ?? e}`);
      }
      log(`bench: ${name} took ${((performance.now() - s0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    clearTimeout(hardStop);
  }

  const report = renderReport({
    startedAt,
    seconds: (performance.now() - t0) / 1000,
    quick,
    only,
    peers: peers ? `@portkey-ai/gateway ${PORTKEY_VERSION}` : undefined,
    machine: machineInfo(),
    busyBefore,
    foreignCores: (machineBusyMicros() - machine0 - (selfTreeMicros() - tree0)) / 1e6 / ((performance.now() - t0) / 1000),
    sections,
    failures,
  });
  const out = join(ROOT, 'bench/results', quick ? 'quick.md' : only.length ? 'partial.md' : 'latest.md');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(out, report + '\n');
  process.stdout.write(report + '\n');
  log(`bench: wrote ${out}`);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  async (err) => {
    console.error(err);
    await stopAll().catch(() => {});
    process.exit(1);
  },
);
