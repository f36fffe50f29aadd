// @ts-check
// Starting the three kinds of server the bench compares: the fake upstream, the floor, keypool.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startNode } from './procs.mjs';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MAIN = join(ROOT, 'dist/src/main.js');
const FLOOR = join(ROOT, 'bench/floor.mjs');
const GC_PROBE = join(ROOT, 'bench/lib/gc-probe.cjs');

export function assertBuilt() {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm run bench does).`);
}

/**
 * The fake upstream in its own process (`keypool fake-upstream`), recording nothing. `rateLimit`
 * ("REQUESTS/WINDOW_MS") makes it send x-ratelimit-* headers, as OpenAI does.
 * @param {{ latencyMs: number, keysJson?: string, name?: string, rateLimit?: string }} o
 */
export function startUpstream(o) {
  const args = [MAIN, 'fake-upstream', '--host', '127.0.0.1', '--port', '0', '--latency-ms', String(o.latencyMs), '--no-record'];
  if (o.keysJson) args.push('--keys-json', o.keysJson);
  if (o.rateLimit) args.push('--rate-limit', o.rateLimit);
  return startNode({ name: o.name ?? `upstream-${o.latencyMs}ms`, args, ready: 'line', cwd: ROOT });
}

/** Node flags that write a CPU profile named `name` into `dir` when the process exits. */
function cpuProfFlags(/** @type {string | undefined} */ dir, /** @type {string} */ name) {
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
}

/**
 * The bare pass-through floor (bench/floor.mjs).
 * @param {{ origin: string, keys: string[], name?: string, cpuProfDir?: string }} o
 */
export function startFloor(o) {
  const name = o.name ?? 'floor';
  const args = [FLOOR, '--origin', o.origin, '--keys', o.keys.join(',')];
  return startNode({ name, args, ready: 'line', cwd: ROOT, nodeFlags: cpuProfFlags(o.cpuProfDir, name) });
}

/**
 * keypool itself (`keypool serve`), with a config written to `dir`. Ready when /healthz says 200.
 * With `gcProbeFile`, gc-probe.cjs is preloaded (see probeAfterGc).
 * `extra`: more top-level config lines (YAML); `upstreamExtra`: more fields of the upstream (YAML, `key: value`).
 * @param {{ dir: string, name: string, upstreamUrl: string, keysFile: string, cpuProfDir?: string, gcProbeFile?: string, extra?: string[], upstreamExtra?: string[] }} o
 */
export async function startKeypool(o) {
  const port = await freePort();
  const configFile = join(o.dir, `${o.name}.yaml`);
  writeFileSync(
    configFile,
    [
      `server: { host: 127.0.0.1, port: ${port} }`,
      'log: { level: warn }',
      'upstreams:',
      '  - name: bench',
      '    prefix: /v1',
      `    baseUrl: ${o.upstreamUrl}/v1`,
      `    keysFromFile: ${o.keysFile}`,
      ...(o.upstreamExtra ?? []).map((l) => `    ${l}`),
      'retry: { maxRetries: 3, maxWaitMs: 30000, timeoutMs: 600000 }',
      ...(o.extra ?? []),
      '',
    ].join('\n'),
  );
  const nodeFlags = [...cpuProfFlags(o.cpuProfDir, o.name), ...(o.gcProbeFile ? ['--expose-gc', '--require', GC_PROBE] : [])];
  return startNode({
    name: o.name,
    args: [MAIN, 'serve', '--config', configFile, '--port', String(port)],
    ready: { healthz: `http://127.0.0.1:${port}` },
    cwd: ROOT,
    nodeFlags,
    env: o.gcProbeFile ? { KEYPOOL_BENCH_PROBE_FILE: o.gcProbeFile } : undefined,
  });
}
