// @ts-check
// Scenario 7 (issue 10 item 6): one client's hostile bodies must not stall every other agent. While
// HOSTILE_CLIENTS connections keep sending a JSON body nested DEPTH deep (`[[[...]]]`, 4,000,000
// bytes: under the 4 MiB that keypool's body scan reads and far under the body limit), a second client
// sends small unrelated requests at a steady pace and their latency is measured; the same probe
// runs without the hostile client, in interleaved rounds, through keypool and (for reference) the
// floor, which never looks inside a body.
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Pool } from 'undici';
import { CHAT_BODY, CHAT_PATH, cleanRounds, jsonHeaders, keyNames } from '../lib/common.mjs';
import { foreignCpuMeter } from '../lib/procs.mjs';
import { fmt, median, percentile, sortedCopy } from '../lib/stats.mjs';
import { startFloor, startKeypool } from '../lib/targets.mjs';

/** Target from issue 10: unrelated requests' p99 while hostile bodies arrive, ms. */
export const HOSTILE_P99_TARGET_MS = 20;
export const HOSTILE_CLIENTS = 6;
export const DEPTH = 2_000_000;
/** Probe workers, each one connection sending a small request every PROBE_INTERVAL_MS. */
const PROBE_WORKERS = 4;
const PROBE_INTERVAL_MS = 10;
/** A probe request slower than this counts as failed (and as this long). */
const PROBE_TIMEOUT_MS = 30_000;

/**
 * @param {import('../lib/common.mjs').Ctx} ctx
 * @returns {Promise<import('../lib/common.mjs').SectionResult>}
 */
export async function hostile(ctx) {
  const { P, up0 } = ctx;
  const keys = keyNames('sk-plain', 10);
  const deep = Buffer.from('['.repeat(DEPTH) + ']'.repeat(DEPTH));
  const floor = await startFloor({ origin: up0.url, keys, name: 'floor-hostile' });
  const kp = await startKeypool({ dir: ctx.dir, name: 'keypool-hostile', upstreamUrl: up0.url, keysFile: ctx.keysFile('plain10', 'sk-plain', 10) });
  const targets = [
    { name: 'floor', url: floor.url },
    { name: 'keypool', url: kp.url },
  ];
  try {
    /** @typedef {{ p50: number, p99: number, max: number, n: number, failed: number, hostileDone: number, hostileBad: number, foreign: number }} HostileRow */
    /** @type {Record<string, Record<'quiet'|'hostile', HostileRow[]>>} */
    const all = { floor: { quiet: [], hostile: [] }, keypool: { quiet: [], hostile: [] } };
    await probeRun(kp.url, deep, false, 1); // warm-up (JIT, connections)
    await probeRun(floor.url, deep, false, 1);
    for (let r = 0; r < P.hostileRounds; r++) {
      for (const t of targets) {
        for (const mode of /** @type {const} */ (['quiet', 'hostile'])) {
          const row = await probeRun(t.url, deep, mode === 'hostile', P.hostileRoundS);
          all[t.name][mode].push(row);
          ctx.log(`  round ${r + 1} ${t.name.padEnd(7)} ${mode.padEnd(7)} unrelated p50 ${fmt(row.p50, 2)} ms p99 ${fmt(row.p99, 2)} ms max ${fmt(row.max, 1)} ms (${row.n} requests${row.failed ? `, ${row.failed} failed` : ''})${mode === 'hostile' ? `, ${row.hostileDone} hostile bodies answered` : ''}`);
        }
      }
    }
    const { keep, note } = cleanRounds('hostile', all.floor.quiet.map((_, r) => Math.max(...targets.flatMap((t) => [all[t.name].quiet[r].foreign, all[t.name].hostile[r].foreign]))));
    const med = (/** @type {string} */ name, /** @type {'quiet'|'hostile'} */ mode, /** @type {keyof HostileRow} */ k) => median(all[name][mode].filter((_, r) => keep(r)).map((x) => x[k]));
    const kpP99 = med('keypool', 'hostile', 'p99');

    /** @type {string[]} */
    const notes = note ? [note] : [];
    for (const t of targets) {
      for (const mode of /** @type {const} */ (['quiet', 'hostile'])) {
        const failed = all[t.name][mode].reduce((a, x) => a + x.failed, 0);
        if (failed > 0) notes.push(`hostile: ${t.name} (${mode}): ${failed} unrelated requests failed or took over ${PROBE_TIMEOUT_MS / 1000} s`);
        const bad = all[t.name][mode].reduce((a, x) => a + x.hostileBad, 0);
        if (bad > 0) notes.push(`hostile: ${t.name}: ${bad} hostile bodies got an error or a non-2xx status`);
      }
    }
    const details = [
      `| proxy | hostile client | unrelated p50 ms | unrelated p99 ms | unrelated max ms | unrelated requests | hostile bodies answered |`,
      `|---|---|---|---|---|---|---|`,
      ...targets.flatMap((t) =>
        /** @type {const} */ (['quiet', 'hostile']).map(
          (mode) =>
            `| ${t.name} | ${mode === 'hostile' ? `${HOSTILE_CLIENTS} connections` : 'none'} | ${fmt(med(t.name, mode, 'p50'), 2)} | ${fmt(med(t.name, mode, 'p99'), 2)} | ${fmt(med(t.name, mode, 'max'), 1)} | ${fmt(med(t.name, mode, 'n'))} | ${mode === 'hostile' ? fmt(med(t.name, mode, 'hostileDone')) : ''} |`,
        ),
      ),
      '',
      `Medians over ${P.hostileRounds} interleaved rounds of ${P.hostileRoundS} s. Unrelated requests: ${PROBE_WORKERS} connections, each sending POST ${CHAT_PATH} with a small JSON body every ${PROBE_INTERVAL_MS} ms (or as soon as its previous answer is in, when that is later). Hostile: ${HOSTILE_CLIENTS} connections each sending a ${fmt(deep.length)}-byte body \`[[[...]]]\` nested ${fmt(DEPTH)} deep, back to back.`,
    ].join('\n');
    return {
      title: `7. Hostile bodies: unrelated requests while ${HOSTILE_CLIENTS} clients send ${fmt(DEPTH)}-deep JSON`,
      rows: [
        { section: '7', metric: `Unrelated p99 while ${HOSTILE_CLIENTS} clients send ${fmt(DEPTH)}-deep JSON, keypool (ms)`, value: fmt(kpP99, 1), target: `< ${HOSTILE_P99_TARGET_MS}`, pass: kpP99 < HOSTILE_P99_TARGET_MS },
        {
          section: '7',
          metric: 'Unrelated p50 / p99 without them, keypool (ms)',
          value: `${fmt(med('keypool', 'quiet', 'p50'), 2)} / ${fmt(med('keypool', 'quiet', 'p99'), 2)}`,
          target: '',
          pass: null,
        },
        {
          section: '7',
          metric: 'Unrelated p50 / p99 with them \\| without, floor (ms)',
          value: `${fmt(med('floor', 'hostile', 'p50'), 2)} / ${fmt(med('floor', 'hostile', 'p99'), 2)} \\| ${fmt(med('floor', 'quiet', 'p50'), 2)} / ${fmt(med('floor', 'quiet', 'p99'), 2)}`,
          target: '',
          pass: null,
        },
      ],
      details,
      notes,
    };
  } finally {
    await Promise.all([floor.stop(), kp.stop()]);
  }
}

/**
 * Paced unrelated requests against `url` for `seconds`, with the hostile client running alongside
 * when `withHostile`.
 * @param {string} url @param {Buffer} deep @param {boolean} withHostile @param {number} seconds
 */
async function probeRun(url, deep, withHostile, seconds) {
  const foreign = foreignCpuMeter();
  const until = performance.now() + seconds * 1000;
  /** @type {number[]} */
  const lat = [];
  let failed = 0;
  let hostileDone = 0;
  let hostileBad = 0;
  const headers = jsonHeaders('sk-plain-0');
  const probe = async (/** @type {number} */ offset) => {
    const client = new Client(url, { headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS });
    try {
      await sleep(offset); // spread the workers over the interval
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          const res = await client.request({ path: CHAT_PATH, method: 'POST', headers, body: CHAT_BODY });
          await res.body.dump();
          if (res.statusCode === 200) lat.push(performance.now() - t0);
          else failed++;
        } catch {
          failed++;
          lat.push(PROBE_TIMEOUT_MS);
        }
        const wait = PROBE_INTERVAL_MS - (performance.now() - t0);
        if (wait > 0) await sleep(wait);
      }
    } finally {
      await client.close().catch(() => {});
    }
  };
  const pool = withHostile ? new Pool(url, { connections: HOSTILE_CLIENTS, headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS }) : undefined;
  const attacker = async () => {
    if (!pool) return;
    while (performance.now() < until) {
      try {
        const res = await pool.request({ path: CHAT_PATH, method: 'POST', headers, body: deep });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) hostileDone++;
        else hostileBad++;
      } catch {
        hostileBad++;
      }
    }
  };
  const workers = [
    ...Array.from({ length: PROBE_WORKERS }, (_, i) => probe((i * PROBE_INTERVAL_MS) / PROBE_WORKERS)),
    ...(pool ? Array.from({ length: HOSTILE_CLIENTS }, attacker) : []),
  ];
  await Promise.all(workers);
  await pool?.close().catch(() => {});
  const sorted = sortedCopy(lat);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.length ? sorted[sorted.length - 1] : NaN, n: sorted.length, failed, hostileDone, hostileBad, foreign: foreign() };
}
