// @ts-check
// Peers for `--peers`: Portkey's open-source gateway (@portkey-ai/gateway from npm), installed on first
// use into bench/.peers (gitignored, never the project's node_modules or package.json), started bound
// to 127.0.0.1 and pointed at the bench's fake upstream through its per-request config header.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startNode } from './procs.mjs';
import { ROOT } from './targets.mjs';

export const PORTKEY_VERSION = '1.15.2';
/**
 * The gateway asks for @hono/node-server ^1.3.3, which npm resolves to 1.19.x; from 1.14.3 on, its
 * lightweight Response keeps the upstream fetch Response's immutable Headers, and every streamed
 * answer fails on Node with "TypeError: immutable" (Portkey-AI/gateway issues 1389 and 1550). 1.13.5
 * is the version the gateway's own package-lock.json pins.
 */
export const HONO_NODE_SERVER_VERSION = '1.13.5';

const PEERS_DIR = join(ROOT, 'bench/.peers');
const GATEWAY = join(PEERS_DIR, 'node_modules/@portkey-ai/gateway/build/start-server.js');
const LAUNCH = join(ROOT, 'bench/lib/portkey-launch.mjs');
/** How long `npm install` may take on first use. */
const INSTALL_TIMEOUT_MS = 5 * 60_000;

/** @param {string} pkg */
function installedVersion(pkg) {
  try {
    return JSON.parse(readFileSync(join(PEERS_DIR, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/**
 * Installs the pinned gateway into bench/.peers unless it is there already. Install scripts are
 * skipped: the gateway's only one is `patch-package`, and the published package ships no patches.
 * @param {(msg: string) => void} log
 */
export function ensurePortkey(log) {
  if (installedVersion('@portkey-ai/gateway') === PORTKEY_VERSION && installedVersion('@hono/node-server') === HONO_NODE_SERVER_VERSION && existsSync(GATEWAY)) return;
  mkdirSync(PEERS_DIR, { recursive: true });
  writeFileSync(
    join(PEERS_DIR, 'package.json'),
    JSON.stringify({ private: true, description: 'bench-only peers (npm run bench -- --peers); not part of keypool', dependencies: { '@portkey-ai/gateway': PORTKEY_VERSION }, overrides: { '@hono/node-server': HONO_NODE_SERVER_VERSION } }, null, 2) + '\n',
  );
  log(`bench: installing @portkey-ai/gateway@${PORTKEY_VERSION} into bench/.peers (first use)`);
  execFileSync('npm', ['install', '--prefix', PEERS_DIR, '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: PEERS_DIR, stdio: ['ignore', 'ignore', 'inherit'], timeout: INSTALL_TIMEOUT_MS });
  if (installedVersion('@portkey-ai/gateway') !== PORTKEY_VERSION) throw new Error('bench/.peers: @portkey-ai/gateway did not install');
}

/**
 * Portkey's gateway as its own process on a free loopback port. Its server would listen on every
 * interface; portkey-launch.mjs binds it to 127.0.0.1 and prints the `listening` line.
 * @param {{ name?: string }} [o]
 */
export async function startPortkey(o = {}) {
  const port = await freePort();
  return startNode({ name: o.name ?? 'portkey', args: [LAUNCH, GATEWAY, String(port)], ready: 'line', cwd: PEERS_DIR });
}

/**
 * The request headers that make Portkey do keypool's job: its `loadbalance` strategy over one target
 * per key (equal weights), each an OpenAI provider whose host is the fake upstream. The open-source
 * gateway takes its config per request in this header (a saved config needs Portkey's hosted service).
 * @param {string} upstreamUrl
 * @param {string[]} keys
 */
export function portkeyHeaders(upstreamUrl, keys) {
  const config = {
    strategy: { mode: 'loadbalance' },
    targets: keys.map((k) => ({ provider: 'openai', api_key: k, custom_host: `${upstreamUrl}/v1`, weight: 1 })),
  };
  return { 'content-type': 'application/json', 'x-portkey-config': JSON.stringify(config) };
}
