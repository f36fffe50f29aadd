// @ts-check
// What every scenario shares: the request bodies, the key names the fake upstream knows, the run
// parameters (quick or full) and the shape of a summary row.

export const CHAT_PATH = '/v1/chat/completions';
export const CHAT_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hi' }] });
export const STREAM_BODY = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'Count to ten' }] });

/**
 * Request headers. Clients send a bearer of their own; the proxies replace it, the direct run needs
 * it to be a key the upstream treats the intended way.
 * @param {string} key
 */
export function jsonHeaders(key) {
  return { 'content-type': 'application/json', authorization: `Bearer ${key}` };
}

/** @param {string} prefix @param {number} n */
export function keyNames(prefix, n) {
  return Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
}

/** Key prefixes and sizes of the pools in which all keys but one are cooling (scenario 6). */
export const COOLING_POOLS = /** @type {const} */ ([
  ['sk-c10', 10],
  ['sk-c10k', 10_000],
]);
/** Long enough to outlast the run, short of cooldown.maxMs (1 h). */
const COOLING_MS = 600_000;

/** The streaming behaviour timed in scenario 3. */
export const STREAM_CHUNKS = 10;
export const STREAM_GAP_MS = 20;

/**
 * Behaviours of the shared 0 ms upstream, by key. Keys it does not list answer `ok`.
 * In the rotation pools the odd keys are the limited ones, so a round robin that lands on one
 * rotates once to an even key.
 * @param {{ longChunks: number, longGapMs: number }} o
 */
export function upstreamBehaviours(o) {
  /** @type {Record<string, unknown>} */
  const keys = {};
  for (let i = 1; i < 10; i += 2) {
    keys[`sk-rot-${i}`] = { kind: 'rate_limit', style: 'retry-after', ms: 1000 };
    keys[`sk-hot-${i}`] = { kind: 'rate_limit', style: 'retry-after', ms: 0 };
  }
  for (const k of keyNames('sk-stream', 3)) keys[k] = { kind: 'stream', chunks: STREAM_CHUNKS, gapMs: STREAM_GAP_MS };
  for (const k of keyNames('sk-long', 10)) keys[k] = { kind: 'stream', chunks: o.longChunks, gapMs: o.longGapMs };
  // Cooling pools (scenario 6): every key but the last answers 429 with a 10-minute Retry-After, so
  // after the warm-up all but one key cool for the whole run and each choice must pass over them.
  for (const [prefix, n] of COOLING_POOLS) for (let i = 0; i < n - 1; i++) keys[`${prefix}-${i}`] = { kind: 'rate_limit', style: 'retry-after', ms: COOLING_MS };
  return keys;
}

/**
 * Run parameters. BENCH_QUICK=1 checks the harness in about a minute; the default is sized to finish
 * in under 10 minutes on 2 cores.
 * @param {boolean} quick
 */
export function params(quick) {
  return quick
    ? {
        connections: 50,
        warmS: 0.5,
        rounds: 3,
        roundS: 1,
        latRounds: 2,
        latRoundS: 1.5,
        streamRequests: 8,
        streamsOpen: 1000,
        longChunks: 40,
        longGapMs: 250,
        growWarm: 3_000,
        growRequests: 10_000,
        scaleRounds: 3,
        scaleRoundS: 1,
        hostileRounds: 1,
        hostileRoundS: 3,
      }
    : {
        connections: 50,
        warmS: 2,
        rounds: 5,
        roundS: 5,
        latRounds: 3,
        latRoundS: 5,
        streamRequests: 30,
        streamsOpen: 1000,
        longChunks: 40,
        longGapMs: 500,
        growWarm: 20_000,
        growRequests: 200_000,
        scaleRounds: 4,
        scaleRoundS: 4,
        hostileRounds: 2,
        hostileRoundS: 6,
      };
}

/** @typedef {ReturnType<typeof params>} Params */

/**
 * One line of the summary table.
 * @typedef {object} Row
 * @property {string} section
 * @property {string} metric
 * @property {string} value
 * @property {string} target   '' when the row is for information
 * @property {boolean | null} pass  null when there is no target
 */

/**
 * What a scenario hands back.
 * @typedef {object} SectionResult
 * @property {string} title
 * @property {Row[]} rows
 * @property {string} details   markdown shown under the summary
 * @property {string[]} notes   anomalies seen (errors, non-2xx, failed streams)
 */

/**
 * Shared context for the scenarios.
 * @typedef {object} Ctx
 * @property {Params} P
 * @property {string} dir              temp dir for configs and key files
 * @property {{ url: string, pid: number }} up0  the 0 ms upstream (shared)
 * @property {(name: string, prefix: string, n: number) => string} keysFile  writes a key file, returns its path
 * @property {string | undefined} cpuProfDir
 * @property {(msg: string) => void} log
 * @property {boolean} peers          `--peers`: also run Portkey's gateway in the throughput, latency and streaming rows
 */

/** A round in which other processes used more CPU than this (in cores) is counted as disturbed. */
export const FOREIGN_WARN_CORES = 0.2;
/** Disturbed rounds are left out of the medians while at least this many clean rounds remain. */
const MIN_CLEAN_ROUNDS = 3;

/**
 * Which rounds the medians use: the clean ones (other processes under FOREIGN_WARN_CORES during
 * every run of the round) when there are at least MIN_CLEAN_ROUNDS, else all of them.
 * @param {string} scenario  for the note
 * @param {number[]} foreignPerRound  cores used by other processes, worst run of each round
 * @returns {{ keep: (i: number) => boolean, note: string | undefined }}
 */
export function cleanRounds(scenario, foreignPerRound) {
  const disturbed = foreignPerRound.filter((f) => f > FOREIGN_WARN_CORES).length;
  if (disturbed === 0) return { keep: () => true, note: undefined };
  const clean = foreignPerRound.length - disturbed;
  if (clean >= MIN_CLEAN_ROUNDS) {
    return {
      keep: (i) => (foreignPerRound[i] ?? 0) <= FOREIGN_WARN_CORES,
      note: `${scenario}: other processes used more than ${FOREIGN_WARN_CORES} cores in ${disturbed} of ${foreignPerRound.length} rounds; those rounds are left out of the medians`,
    };
  }
  return {
    keep: () => true,
    note: `${scenario}: other processes used more than ${FOREIGN_WARN_CORES} cores in ${disturbed} of ${foreignPerRound.length} rounds, too many to leave out; the figures are disturbed, rerun on a quiet machine`,
  };
}

/** @param {number} x */
export function signed(x, d = 2) {
  if (!Number.isFinite(x)) return '–';
  return `${x >= 0 ? '+' : ''}${x.toFixed(d)}`;
}
