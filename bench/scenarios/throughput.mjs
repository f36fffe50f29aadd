// @ts-check
// Scenario 1: request rate and CPU per request at 50 connections against the 0 ms upstream: direct,
// the honest floor, keypool (and Portkey's gateway with --peers), in interleaved rounds (direct,
// floor, keypool, ..., direct, ...) so drift hits all alike. CPU µs per request = the proxy process's
// utime + stime from /proc/<pid>/stat over the round ÷ the responses it served; keypool's CPU ÷ the
// floor's is the headline, the throughput ratio beside it.
import { CHAT_BODY, CHAT_PATH, cleanRounds, jsonHeaders, keyNames } from '../lib/common.mjs';
import { runLoad } from '../lib/load.mjs';
import { portkeyHeaders, startPortkey } from '../lib/peers.mjs';
import { fmt, median } from '../lib/stats.mjs';
import { startFloor, startKeypool } from '../lib/targets.mjs';

/** Targets from issue 15: keypool against the honest floor. */
export const CPU_TARGET = 1.15;
export const RATE_TARGET = 0.9;

/**
 * @param {import('../lib/common.mjs').Ctx} ctx
 * @returns {Promise<import('../lib/common.mjs').SectionResult>}
 */
export async function throughput(ctx) {
  const { P, up0 } = ctx;
  const keys = keyNames('sk-plain', 10);
  /** @type {import('../lib/procs.mjs').Proc[]} */
  const procs = [];
  try {
    const floor = await startFloor({ origin: up0.url, keys, cpuProfDir: ctx.cpuProfDir });
    procs.push(floor);
    const kp = await startKeypool({ dir: ctx.dir, name: 'keypool-throughput', upstreamUrl: up0.url, keysFile: ctx.keysFile('plain10', 'sk-plain', 10), cpuProfDir: ctx.cpuProfDir });
    procs.push(kp);
    const plain = jsonHeaders('sk-plain-0');
    /** @type {{ name: string, url: string, pid: number | undefined, headers: Record<string, string> }[]} */
    const targets = [
      { name: 'direct', url: up0.url, pid: undefined, headers: plain },
      { name: 'floor', url: floor.url, pid: floor.pid, headers: plain },
      { name: 'keypool', url: kp.url, pid: kp.pid, headers: plain },
    ];
    if (ctx.peers) {
      const pk = await startPortkey();
      procs.push(pk);
      targets.push({ name: 'portkey', url: pk.url, pid: pk.pid, headers: portkeyHeaders(up0.url, keys) });
    }
    const names = targets.map((t) => t.name);
    const load = (/** @type {typeof targets[number]} */ t, /** @type {number} */ s) =>
      runLoad({ url: t.url, path: CHAT_PATH, headers: t.headers, body: CHAT_BODY, connections: P.connections, duration: s, pid: t.pid });

    for (const t of targets) await load(t, P.warmS);
    /** @type {Record<string, import('../lib/load.mjs').LoadResult[]>} */
    const runs = Object.fromEntries(names.map((n) => [n, []]));
    for (let r = 0; r < P.rounds; r++) {
      for (const t of targets) {
        const res = await load(t, P.roundS);
        runs[t.name].push(res);
        ctx.log(`  round ${r + 1} ${t.name.padEnd(7)} ${fmt(res.rps)} req/s${t.pid ? `, ${fmt(res.cpuUs / res.completed, 1)} µs CPU/req` : ''}, other processes ${fmt(res.foreignCores, 2)} cores`);
      }
    }
    const cpu = (/** @type {import('../lib/load.mjs').LoadResult} */ x) => x.cpuUs / x.completed;
    const { keep, note } = cleanRounds('throughput', runs.direct.map((_, i) => Math.max(...names.map((n) => runs[n][i].foreignCores))));
    const kept = (/** @type {string} */ n) => runs[n].filter((_, i) => keep(i));
    /** Median over kept rounds of a per-round ratio a/b. */
    const ratio = (/** @type {string} */ a, /** @type {string} */ b, /** @type {(x: import('../lib/load.mjs').LoadResult) => number} */ f) => median(kept(a).map((x, i) => f(x) / f(kept(b)[i])));
    const rate = (/** @type {import('../lib/load.mjs').LoadResult} */ x) => x.rps;
    const rps = (/** @type {string} */ n) => median(kept(n).map(rate));
    const cpuOf = (/** @type {string} */ n) => median(kept(n).map(cpu));
    const cpuRatio = ratio('keypool', 'floor', cpu);
    const rateRatio = ratio('keypool', 'floor', rate);

    /** @type {string[]} */
    const notes = note ? [note] : [];
    for (const [name, list] of Object.entries(runs)) {
      const bad = list.reduce((a, x) => a + x.non2xx + x.errors, 0);
      if (bad > 0) notes.push(`throughput: ${name} saw ${bad} non-2xx or errors (${JSON.stringify(list.map((x) => x.statusCodes))})`);
    }
    const proxies = names.filter((n) => n !== 'direct');
    const details = [
      `| round | ${names.map((n) => `${n} req/s`).join(' | ')} | ${proxies.map((n) => `${n} CPU µs/req`).join(' | ')} | keypool ÷ floor, CPU | keypool ÷ floor, req/s | other processes, cores (max of the runs) |`,
      `|---|${names.map(() => '---|').join('')}${proxies.map(() => '---|').join('')}---|---|---|`,
      ...runs.direct.map(
        (_, i) =>
          `| ${i + 1}${keep(i) ? '' : ' (left out)'} | ${names.map((n) => fmt(runs[n][i].rps)).join(' | ')} | ${proxies.map((n) => fmt(cpu(runs[n][i]), 1)).join(' | ')} | ${fmt(cpu(runs.keypool[i]) / cpu(runs.floor[i]), 3)} | ${fmt(runs.keypool[i].rps / runs.floor[i].rps, 3)} | ${fmt(Math.max(...names.map((n) => runs[n][i].foreignCores)), 2)} |`,
      ),
      `| **median** | ${names.map((n) => fmt(rps(n))).join(' | ')} | ${proxies.map((n) => fmt(cpuOf(n), 1)).join(' | ')} | **${fmt(cpuRatio, 3)}** | **${fmt(rateRatio, 3)}** | |`,
      '',
      `Of that, system (kernel) time per request, median: ${proxies.map((n) => `${n} ${fmt(median(kept(n).map((x) => x.sysUs / x.completed)), 1)} µs`).join(', ')}; the rest is user time (JavaScript, V8, libuv).`,
      '',
      `CPU µs/req = the proxy process's utime + stime (\`/proc/<pid>/stat\`) over the round ÷ responses served; ratios are per round, then the median. The proxies are saturated here, so this is their cost per request at full load.`,
    ].join('\n');

    /** @type {import('../lib/common.mjs').Row[]} */
    const rows = [
      { section: '1', metric: '**CPU per proxied request, keypool ÷ floor** (headline)', value: `**${fmt(cpuRatio, 3)}** (${fmt(cpuOf('keypool'), 1)} ÷ ${fmt(cpuOf('floor'), 1)} µs)`, target: `≤ ${CPU_TARGET}`, pass: cpuRatio <= CPU_TARGET },
      { section: '1', metric: 'Throughput keypool ÷ floor', value: `${fmt(rateRatio, 3)} (${fmt(rps('keypool'))} ÷ ${fmt(rps('floor'))} req/s)`, target: `≥ ${RATE_TARGET}`, pass: rateRatio >= RATE_TARGET },
      { section: '1', metric: 'Throughput keypool ÷ direct, floor ÷ direct', value: `${fmt(ratio('keypool', 'direct', rate), 3)}, ${fmt(ratio('floor', 'direct', rate), 3)}`, target: '', pass: null },
    ];
    if (ctx.peers) {
      rows.push(
        { section: '1', metric: 'Portkey: CPU per request ÷ floor; throughput ÷ floor', value: `${fmt(ratio('portkey', 'floor', cpu), 3)} (${fmt(cpuOf('portkey'), 1)} µs); ${fmt(ratio('portkey', 'floor', rate), 3)}`, target: '', pass: null },
        { section: '1', metric: 'keypool ÷ Portkey: throughput; CPU per request', value: `${fmt(ratio('keypool', 'portkey', rate), 2)}; ${fmt(ratio('keypool', 'portkey', cpu), 3)}`, target: '', pass: null },
      );
    }
    return {
      title: `1. Throughput and CPU: ${P.connections} connections, 0 ms upstream, POST ${CHAT_PATH} (${P.rounds} interleaved rounds of ${P.roundS} s)`,
      rows,
      details,
      notes,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}
