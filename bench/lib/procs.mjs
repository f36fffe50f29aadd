// @ts-check
// Child processes for the bench: start one, wait until it serves, read its CPU time and RSS from
// /proc, and make sure every child dies with the bench, however the bench ends.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { CLK_TCK } from './machine.mjs';

// Kept here too for callers that imported it from this module before machine.mjs existed.
export { machineInfo } from './machine.mjs';

/** How long a child may take to print its `listening` line or answer /healthz. */
const READY_TIMEOUT_MS = 20_000;
/** How long a child gets after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 2_000;
/** Bytes of a child's stdout/stderr kept to explain a failure. */
const TAIL_BYTES = 4_096;

/** @type {Set<import('node:child_process').ChildProcess>} */
const live = new Set();

let exitHooked = false;
function hookExit() {
  if (exitHooked) return;
  exitHooked = true;
  // 'exit' handlers must be synchronous: SIGKILL whatever is still alive.
  process.on('exit', killAllNow);
  for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
    process.once(sig, () => {
      killAllNow();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    console.error(err);
    killAllNow();
    process.exit(1);
  });
}

/** Kill every child still running, synchronously (for exit paths). */
export function killAllNow() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

/** Stop every child still running: SIGTERM, then SIGKILL after a grace period. */
export async function stopAll() {
  await Promise.all([...live].map((c) => stopChild(c)));
}

/** @param {import('node:child_process').ChildProcess} child */
async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    live.delete(child);
    return;
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = sleep(STOP_GRACE_MS).then(() => 'timeout');
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(STOP_GRACE_MS)]);
  }
  live.delete(child);
}

/** A TCP port that was free a moment ago on 127.0.0.1 (listen on 0, read it, close). */
export async function freePort() {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * @typedef {object} Proc
 * @property {string} name
 * @property {number} pid
 * @property {string} url  base URL, e.g. http://127.0.0.1:1234
 * @property {import('node:child_process').ChildProcess} child
 * @property {() => Promise<void>} stop
 * @property {() => string} tail  last output, for error messages
 */

/**
 * Start `node <args>` and wait until it is ready: either it prints `listening <url>` on stdout
 * (`ready: 'line'`), or `GET <url>/healthz` answers 200 (`ready: { healthz: url }`).
 * @param {{ name: string, args: string[], ready: 'line' | { healthz: string }, cwd?: string, nodeFlags?: string[], env?: Record<string, string> }} o
 * @returns {Promise<Proc>}
 */
export async function startNode(o) {
  hookExit();
  const child = spawn(process.execPath, [...(o.nodeFlags ?? []), ...o.args], {
    cwd: o.cwd,
    env: o.env ? { ...process.env, ...o.env } : process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let out = '';
  const keep = (/** @type {Buffer} */ b) => {
    out = (out + b.toString('utf8')).slice(-TAIL_BYTES);
  };
  // Keep draining both pipes for the child's whole life, so a chatty child never blocks on a full pipe.
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const tail = () => out;
  const fail = (/** @type {string} */ why) =>
    new Error(`${o.name} (${o.args.join(' ')}): ${why}\n--- output tail ---\n${out}`);

  /** @type {string} */
  let url;
  try {
    if (o.ready === 'line') {
      url = await waitForLine(child, fail);
    } else {
      url = o.ready.healthz;
      await waitForHealthz(child, url, fail);
    }
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  const pid = child.pid;
  if (pid === undefined) throw fail('no pid');
  return { name: o.name, pid, url, child, stop: () => stopChild(child), tail };
}

/**
 * @param {import('node:child_process').ChildProcess} child
 * @param {(why: string) => Error} fail
 * @returns {Promise<string>}
 */
function waitForLine(child, fail) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => done(fail(`no "listening <url>" line within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    const onData = (/** @type {Buffer} */ b) => {
      buf += b.toString('utf8');
      const m = /^listening (https?:\/\/\S+)\s*$/m.exec(buf);
      if (m) done(null, m[1].replace(/\/$/, ''));
    };
    const onExit = (/** @type {number|null} */ code) => done(fail(`exited (${code}) before listening`));
    /** @param {Error|null} err @param {string} [url] */
    function done(err, url) {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(/** @type {string} */ (url));
    }
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

/**
 * @param {import('node:child_process').ChildProcess} child
 * @param {string} url
 * @param {(why: string) => Error} fail
 */
async function waitForHealthz(child, url, fail) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw fail(`exited (${child.exitCode ?? child.signalCode}) before /healthz answered`);
    try {
      const res = await request(`${url}/healthz`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw fail(`/healthz did not answer 200 within ${READY_TIMEOUT_MS} ms`);
}

/**
 * User + system CPU time of a process (all its threads), in microseconds, from /proc/<pid>/stat.
 * @param {number} pid
 */
export function cpuMicros(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 2 (comm) may hold spaces; fields after the last ')' start at field 3 (state).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) * 1e6) / CLK_TCK;
}

/**
 * User and system (kernel: syscalls, loopback TCP) CPU time of a process separately, in µs.
 * @param {number} pid
 */
export function cpuSplitMicros(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(rest[11]) * 1e6) / CLK_TCK, sys: (Number(rest[12]) * 1e6) / CLK_TCK };
}

/**
 * Resident set size of a process in bytes, from /proc/<pid>/status VmRSS.
 * @param {number} pid
 */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Busy CPU time of the whole machine (all cores) in µs, from /proc/stat; steal time counts as busy. */
export function machineBusyMicros() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return (busy * 1e6) / CLK_TCK;
}

/** CPU time of this process plus its children that have exited (utime+stime+cutime+cstime), in µs. */
export function selfTreeMicros() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14])) * 1e6) / CLK_TCK;
}

/**
 * Ask a process started with gc-probe.cjs for a full GC and its memoryUsage() afterwards.
 * @param {Proc} proc
 * @param {string} file  the process's KEYPOOL_BENCH_PROBE_FILE
 * @returns {Promise<NodeJS.MemoryUsage & { rssAfterGc: number }>}
 */
export async function probeAfterGc(proc, file) {
  rmSync(file, { force: true });
  proc.child.kill('SIGUSR2');
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    if (existsSync(file)) {
      const usage = JSON.parse(readFileSync(file, 'utf8'));
      rmSync(file, { force: true });
      return { ...usage, rssAfterGc: rssBytes(proc.pid) };
    }
    await sleep(50);
  }
  throw new Error(`${proc.name}: no answer to the GC probe within 5 s`);
}

/**
 * CPU used by processes outside the bench (this process and its children) from now until the
 * returned function is called, in cores (1 = one core busy all the time).
 */
export function foreignCpuMeter() {
  const t0 = performance.now();
  const machine0 = machineBusyMicros();
  const ours0 = oursMicros();
  return () => {
    const seconds = (performance.now() - t0) / 1000;
    return (machineBusyMicros() - machine0 - (oursMicros() - ours0)) / 1e6 / seconds;
  };
}

/** This process, its reaped children and its live children, in CPU µs. */
function oursMicros() {
  let total = selfTreeMicros();
  for (const child of live) {
    if (child.pid === undefined) continue;
    try {
      total += cpuMicros(child.pid);
    } catch {
      // exited between the check and the read: its time is in cutime/cstime once reaped
    }
  }
  return total;
}
