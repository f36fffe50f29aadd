// @ts-check
// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and per group of source
// (Fastify, undici, Node streams, pino, keypool's own modules, ...), as shares of busy time.

/**
 * @typedef {object} CpuProfile
 * @property {{ id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }[]} nodes
 * @property {number[]} samples
 * @property {number[]} timeDeltas
 * @property {number} startTime  µs on the monotonic clock (the one process.hrtime reads)
 */

/** Groups by the source a function comes from; the first match wins. */
const GROUPS = [
  [/node_modules\/(fastify|find-my-way|avvio|light-my-request|@fastify|fast-json-stringify|fast-querystring|process-warning|toad-cache|rfdc|abstract-logging|json-schema-ref-resolver|secure-json-parse|fast-uri|ret|safe-regex2)\//, 'fastify (routing, hooks, reply)'],
  [/node_modules\/undici\/lib\/api\/readable\.js|node_modules\/undici\/lib\/api\/api-request\.js/, 'undici request() + its body Readable'],
  [/node_modules\/undici\/|^wasm:\/\//, 'undici (client, llhttp parser, pool)'],
  [/node_modules\/(pino|pino-std-serializers|sonic-boom|thread-stream|fast-redact|@pinojs|quick-format-unescaped|atomic-sleep|on-exit-leak-free|safe-stable-stringify|fast-copy|real-require)\//, 'pino (logging)'],
  [/node_modules\/zod\//, 'zod'],
  [/node_modules\//, 'other dependencies'],
  [/\/dist\/src\/proxy\//, 'keypool proxy/ (plugin, rotate, forward, headers)'],
  [/\/dist\/src\/keys\//, 'keypool keys/ (pool, lease, key state)'],
  [/\/dist\/src\//, 'keypool other modules'],
  [/\/bench\/floor\.mjs$/, 'floor.mjs itself'],
  [/^node:internal\/streams\/|^node:stream/, 'Node streams (Readable/Writable, pipe)'],
  [/^node:_http_|^node:http|^node:internal\/http/, 'node:http (server, response)'],
  [/^node:net$|^node:internal\/stream_base_commons|^node:internal\/net|^node:internal\/tcp/, 'node:net (sockets)'],
  [/^node:events$/, 'EventEmitter (emit, on/off)'],
  [/^node:internal\/event_target|^node:internal\/abort_controller/, 'AbortController / AbortSignal'],
  [/^node:internal\/deps\/undici/, "Node's bundled undici (fetch, web streams)"],
  [/^node:path$|^node:internal\/url/, 'path, URL'],
  [/^node:internal\/modules\/|^node:internal\/bootstrap|^node:internal\/deps\/cjs-module-lexer/, 'module loading'],
  [/^node:internal\/timers|^node:timers/, 'timers'],
  [/^node:internal\/async_hooks|^node:async_hooks|^node:internal\/process\/task_queues/, 'async hooks, microtasks'],
  [/^node:/, 'other Node internals'],
];

/** Native functions (no URL) by what they serve. */
/** @type {Map<string, string>} */
const NATIVE = new Map(/** @type {[string, string][]} */ ([
  ...['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String', 'writeAsciiString', 'read', 'close', 'shutdown', 'readStop', 'readStart'].map((f) => [f, 'native socket I/O (writev, read, close)']),
  ...['now', 'getLibuvNow', 'ref', 'unref', 'scheduleTimer', 'toggleTimerRef', 'toggleImmediateRef'].map((f) => [f, 'timers']),
  ...['runMicrotasks', 'setupPromiseHook', 'executionAsyncResource'].map((f) => [f, 'async hooks, microtasks']),
  ...['GenericJSToWasmWrapper', 'Instance', 'parse'].map((f) => [f, 'undici (client, llhttp parser, pool)']),
  ...['utf8Slice', 'latin1Slice', 'asciiSlice', 'base64Write', 'byteLengthUtf8', 'copy', 'compare', 'fill', 'set length', 'get buffer'].map((f) => [f, 'Buffer (native)']),
]));

/** @param {string} functionName @param {string} url */
function groupOf(functionName, url) {
  if (url === '') {
    if (functionName === '(garbage collector)') return 'garbage collector';
    if (functionName === '(program)') return 'V8/native (program)';
    return NATIVE.get(functionName) ?? 'other native functions';
  }
  for (const [re, name] of GROUPS) if (/** @type {RegExp} */ (re).test(url)) return /** @type {string} */ (name);
  return 'other';
}

/**
 * @param {CpuProfile} profile
 * @param {string} root  the checkout's root, cut from file URLs
 * @param {{ fromUs: number, toUs: number }} [window]  only samples taken in it (monotonic µs, as
 *   process.hrtime.bigint() / 1000n in any process on the machine): the measured load, not start-up
 */
export function summarize(profile, root, window) {
  /** @type {Map<number, { functionName: string, url: string, lineNumber: number }>} */
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  /** @type {Map<number, number>} */
  const selfUs = new Map();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    // timeDeltas[i] is the time before sample i; the sample's node owns the interval that follows it.
    t += profile.timeDeltas[i] ?? 0;
    if (window && (t < window.fromUs || t > window.toUs)) continue;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt);
  }
  /** @type {Map<string, { name: string, where: string, group: string, us: number }>} */
  const byFunction = new Map();
  /** @type {Map<string, number>} */
  const byGroup = new Map();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const f = frames.get(id);
    if (!f || f.functionName === '(idle)') continue;
    busy += us;
    const group = groupOf(f.functionName, f.url);
    byGroup.set(group, (byGroup.get(group) ?? 0) + us);
    const where = f.url === '' ? '' : `${shortUrl(f.url, root)}:${f.lineNumber + 1}`;
    const key = `${f.functionName}@${where}`;
    const entry = byFunction.get(key) ?? { name: f.functionName || '(anonymous)', where, group, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
  }
  const functions = [...byFunction.values()].sort((a, b) => b.us - a.us).map((f) => ({ ...f, share: f.us / busy }));
  const groups = [...byGroup.entries()].sort((a, b) => b[1] - a[1]).map(([group, us]) => ({ group, us, share: us / busy }));
  return { busyUs: busy, functions, groups };
}

/** @param {string} url @param {string} root */
function shortUrl(url, root) {
  const path = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const rel = path.startsWith(root) ? path.slice(root.length) : path;
  const nm = rel.lastIndexOf('node_modules/');
  return nm === -1 ? rel : rel.slice(nm + 'node_modules/'.length);
}
