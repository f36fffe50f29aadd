// @ts-check
// Streaming clients: one timed SSE request (time to first chunk, gaps between reads, whether any
// read carried more than one chunk), and a crowd of long-lived streams held open for the RSS probe.
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Pool } from 'undici';

/**
 * @typedef {object} StreamSample
 * @property {number} status
 * @property {number} headersMs  request start -> response head
 * @property {number} ttfbMs     request start -> first body bytes
 * @property {number[]} gapsMs   between consecutive reads that carried chunk payloads
 * @property {number} reads      body reads that carried at least one chunk payload
 * @property {number} chunks     chunk payloads seen (`data: {...}`; `[DONE]` not counted)
 * @property {number} maxPerRead most chunk payloads seen in one read (>1 means coalesced)
 */

/** Count `data: {` payloads in one read (the `data: [DONE]` terminator is not a chunk). */
function countChunks(/** @type {string} */ s) {
  let n = 0;
  let i = s.indexOf('data: {');
  while (i !== -1) {
    n++;
    i = s.indexOf('data: {', i + 7);
  }
  return n;
}

/** A keep-alive client for sequential streaming requests against one target. */
export function streamClient(/** @type {string} */ url) {
  return new Client(url, { keepAliveTimeout: 30_000, bodyTimeout: 30_000, headersTimeout: 30_000 });
}

/**
 * One streamed request, read in flowing mode so each socket read is seen as its own event.
 * @param {Client} client
 * @param {{ path: string, headers: Record<string,string>, body: string }} req
 * @returns {Promise<StreamSample>}
 */
export async function timedStream(client, req) {
  const t0 = performance.now();
  const res = await client.request({ path: req.path, method: 'POST', headers: req.headers, body: req.body, signal: AbortSignal.timeout(30_000) });
  const headersMs = performance.now() - t0;
  /** @type {number[]} */
  const times = [];
  let ttfbMs = NaN;
  let chunks = 0;
  let maxPerRead = 0;
  await new Promise((resolve, reject) => {
    res.body.on('data', (/** @type {Buffer} */ buf) => {
      const now = performance.now();
      if (Number.isNaN(ttfbMs)) ttfbMs = now - t0;
      const n = countChunks(buf.toString('utf8'));
      if (n === 0) return;
      chunks += n;
      if (n > maxPerRead) maxPerRead = n;
      times.push(now);
    });
    res.body.once('end', resolve);
    res.body.once('error', reject);
  });
  const gapsMs = times.slice(1).map((t, i) => t - times[i]);
  return { status: res.statusCode, headersMs, ttfbMs, gapsMs, reads: times.length, chunks, maxPerRead };
}

/**
 * Open `count` concurrent streams against `url` and keep reading them; resolves once each has
 * received its first body bytes (or `timeoutMs` passed). Call `close()` to abort them all.
 * @param {{ url: string, path: string, headers: Record<string,string>, body: string, count: number, timeoutMs: number }} o
 */
export async function holdStreams(o) {
  const pool = new Pool(o.url, { connections: o.count, pipelining: 1, keepAliveTimeout: 30_000, bodyTimeout: 60_000, headersTimeout: 60_000 });
  const ac = new AbortController();
  // One signal for all the streams, so one abort closes them all: that is `count` listeners, not a leak.
  setMaxListeners(o.count + 10, ac.signal);
  let started = 0;
  let failed = 0;
  /** @type {Map<number, number>} */
  const statuses = new Map();
  /** @type {string[]} */
  const errors = [];
  /** @type {() => void} */
  let allStarted = () => {};
  const everyoneStarted = new Promise((/** @type {(v?: unknown) => void} */ resolve) => {
    allStarted = resolve;
  });
  const settle = () => {
    if (started + failed >= o.count) allStarted();
  };
  const one = async () => {
    try {
      const res = await pool.request({ path: o.path, method: 'POST', headers: o.headers, body: o.body, signal: ac.signal });
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      let first = true;
      res.body.on('data', () => {
        if (first) {
          first = false;
          started++;
          settle();
        }
      });
      await new Promise((resolve) => {
        res.body.once('end', resolve);
        res.body.once('error', resolve);
        res.body.once('close', resolve);
      });
      if (first) {
        failed++;
        settle();
      }
    } catch (err) {
      if (!ac.signal.aborted) {
        failed++;
        if (errors.length < 5) errors.push(String(/** @type {Error} */ (err)?.message ?? err));
        settle();
      }
    }
  };
  /** @type {Promise<void>[]} */
  const all = [];
  // Open in batches so the listen backlog is not flooded with 1,000 SYNs at once.
  const BATCH = 100;
  const t0 = performance.now();
  for (let i = 0; i < o.count; i += BATCH) {
    for (let j = i; j < Math.min(o.count, i + BATCH); j++) all.push(one());
    await sleep(20);
  }
  await Promise.race([everyoneStarted, sleep(o.timeoutMs)]);
  const openMs = performance.now() - t0;
  return {
    started: () => started,
    failed: () => failed,
    openMs,
    statuses,
    errors,
    async close() {
      ac.abort();
      await Promise.race([Promise.allSettled(all), sleep(5_000)]);
      await pool.destroy().catch(() => {});
    },
  };
}
