// @ts-check
// One autocannon run against one target, with the figures the bench needs: request rate, 2xx
// count, CPU time the target process spent on it (/proc), and optionally every latency sample at
// sub-millisecond resolution (autocannon's own histogram rounds to whole milliseconds).
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { cpuMicros, cpuSplitMicros, foreignCpuMeter } from './procs.mjs';
import { sortedCopy } from './stats.mjs';

/**
 * @typedef {object} LoadOptions
 * @property {string} url          target base URL
 * @property {string} path         request path, e.g. /v1/chat/completions
 * @property {string} [method]     default POST
 * @property {Record<string,string>} [headers]
 * @property {string} [body]
 * @property {number} connections
 * @property {number} [duration]   seconds (bounded run); one of duration / amount
 * @property {number} [amount]     total requests (bounded run)
 * @property {number} [pid]        target process whose CPU time is measured
 * @property {boolean} [latencies] keep every 2xx latency sample (ms, float)
 * @property {(headers: Record<string, string|string[]>) => void} [onHeaders] see each response's headers (costs load-generator CPU)
 */

/**
 * @typedef {object} LoadResult
 * @property {number} rps          completed requests per second (any status)
 * @property {number} completed    responses received
 * @property {number} ok           2xx responses
 * @property {number} non2xx
 * @property {number} errors       connection errors and timeouts
 * @property {number} seconds      wall time of the run
 * @property {number} cpuUs        CPU µs the target process used during the run (NaN without pid)
 * @property {number} sysUs        of which system (kernel) time (NaN without pid)
 * @property {Float64Array} [lat]  sorted 2xx latencies in ms
 * @property {Record<string, {count:number}>} statusCodes
 * @property {number} foreignCores  CPU other processes on the machine used during the run, in cores
 */

/** Hard ceiling on one run, whatever the options say. */
const MAX_RUN_S = 120;

/**
 * @param {LoadOptions} o
 * @returns {Promise<LoadResult>}
 */
export async function runLoad(o) {
  /** @type {number[]} */
  const lat = [];
  let ok = 0;
  let completed = 0;
  const onResponse = o.onHeaders
    ? (/** @type {number} */ _status, /** @type {string} */ _body, /** @type {unknown} */ _ctx, /** @type {Record<string,string|string[]>} */ headers) =>
        o.onHeaders?.(headers)
    : undefined;
  const cpu0 = o.pid ? cpuMicros(o.pid) : NaN;
  const sys0 = o.pid ? cpuSplitMicros(o.pid).sys : NaN;
  const foreign = foreignCpuMeter();
  const t0 = performance.now();
  const instance = autocannon({
    url: o.url,
    connections: o.connections,
    pipelining: 1,
    duration: o.amount ? MAX_RUN_S : Math.min(o.duration ?? 5, MAX_RUN_S),
    amount: o.amount,
    timeout: 30,
    requests: [
      {
        method: /** @type {any} */ (o.method ?? 'POST'),
        path: o.path,
        headers: o.headers ?? {},
        body: o.body,
        onResponse,
      },
    ],
  });
  instance.on('response', (/** @type {unknown} */ _client, /** @type {number} */ status, /** @type {number} */ _bytes, /** @type {number} */ ms) => {
    completed++;
    if (status >= 200 && status < 300) {
      ok++;
      if (o.latencies) lat.push(ms);
    }
  });
  const r = await instance;
  const seconds = (performance.now() - t0) / 1000;
  const cpuUs = o.pid ? cpuMicros(o.pid) - cpu0 : NaN;
  const sysUs = o.pid ? cpuSplitMicros(o.pid).sys - sys0 : NaN;
  return {
    rps: r.requests.total / r.duration,
    completed,
    ok,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    seconds,
    cpuUs,
    sysUs,
    lat: o.latencies ? sortedCopy(lat) : undefined,
    statusCodes: r.statusCodeStats,
    foreignCores: foreign(),
  };
}

/**
 * Like runLoad with `connections` connections, but each connection is its own single-connection
 * autocannon run, started `staggerMs` after the previous one. A closed loop whose connections all
 * start together keeps them in lock-step: against a fixed-latency upstream every request then
 * arrives in one burst per round trip, and the proxy's queue behind that burst is what gets
 * measured. Staggered starts spread arrivals evenly, as independent clients would.
 * @param {LoadOptions & { staggerMs: number }} o
 * @returns {Promise<LoadResult>}
 */
export async function runStaggered(o) {
  const cpu0 = o.pid ? cpuMicros(o.pid) : NaN;
  const foreign = foreignCpuMeter();
  const t0 = performance.now();
  /** @type {Promise<LoadResult>[]} */
  const runs = [];
  for (let i = 0; i < o.connections; i++) {
    runs.push(runLoad({ ...o, connections: 1, pid: undefined }));
    await sleep(o.staggerMs);
  }
  const all = await Promise.all(runs);
  const seconds = (performance.now() - t0) / 1000;
  const completed = all.reduce((a, x) => a + x.completed, 0);
  /** @type {Record<string, {count:number}>} */
  const statusCodes = {};
  for (const r of all) for (const [k, v] of Object.entries(r.statusCodes)) statusCodes[k] = { count: (statusCodes[k]?.count ?? 0) + v.count };
  return {
    rps: all.reduce((a, x) => a + x.rps, 0),
    completed,
    ok: all.reduce((a, x) => a + x.ok, 0),
    non2xx: all.reduce((a, x) => a + x.non2xx, 0),
    errors: all.reduce((a, x) => a + x.errors, 0),
    seconds,
    cpuUs: o.pid ? cpuMicros(o.pid) - cpu0 : NaN,
    sysUs: NaN,
    lat: o.latencies ? Float64Array.from(all.flatMap((x) => Array.from(/** @type {Float64Array} */ (x.lat)))).sort() : undefined,
    statusCodes,
    foreignCores: foreign(),
  };
}
