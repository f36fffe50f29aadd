// @ts-check
// The self-check run before every bench: is the floor a correct pass-through? A floor that drops a
// header, buffers a stream or leaks an upstream request would make every ratio a lie. Against a
// scripted upstream in this process (so it can see what arrives and when a request is cancelled):
// a plain request (key injected round-robin, body byte-exact, client credential and hop-by-hop
// headers gone, the answer byte-exact with its Content-Length), a streamed one (head before the
// first chunk, chunks not coalesced; both decided by lock-step, not by timing, so a loaded machine
// cannot fail them), a 429 passed through with its Retry-After and body, and a
// client that leaves mid-stream (the upstream request is cancelled).
import { once } from 'node:events';
import { Agent, createServer, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { startFloor } from './targets.mjs';

const CHUNKS = 3;
/** How long the check waits for a head or a chunk that a correct floor passes on at once. */
const STEP_TIMEOUT_MS = 5_000;
const CANCEL_WAIT_MS = 5_000;
const PLAIN = JSON.stringify({ id: 'check', choices: [{ message: { content: 'ok' } }] });
const LIMITED = JSON.stringify({ error: { message: 'slow down', type: 'requests', code: 'rate_limit_exceeded' } });

/**
 * The upstream: what it answers depends on the key the floor injected (k-plain-*, k-stream, k-429,
 * k-hang); it records every request and when a hanging one was closed by the floor.
 */
async function scriptedUpstream() {
  /** @type {{ auth: string | undefined, headers: import('node:http').IncomingHttpHeaders, body: Buffer }[]} */
  const seen = [];
  let hangClosed = false;
  /** @type {import('node:http').ServerResponse | undefined} */
  let stream;
  const server = createServer((req, res) => {
    /** @type {Buffer[]} */
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const auth = req.headers.authorization;
      seen.push({ auth, headers: req.headers, body: Buffer.concat(chunks) });
      if (auth?.startsWith('Bearer k-plain')) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(PLAIN), 'keep-alive': 'timeout=5', 'x-upstream': 'yes' });
        res.end(PLAIN);
      } else if (auth === 'Bearer k-stream') {
        // Lock-step: the head goes now; each chunk only when the check asks for it, after it has
        // read the previous one. A floor that holds the head or gathers chunks stalls the check.
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.flushHeaders();
        stream = res;
      } else if (auth === 'Bearer k-429') {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7', 'content-length': Buffer.byteLength(LIMITED) });
        res.end(LIMITED);
      } else if (auth === 'Bearer k-hang') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"n":0}\n\n');
        res.on('close', () => {
          hangClosed = true;
        });
      } else {
        res.writeHead(500).end();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${addr.port}`,
    seen,
    hangClosed: () => hangClosed,
    /** @param {string} text */
    streamWrite: (text) => stream?.write(text),
    streamEnd: () => stream?.end('data: [DONE]\n\n'),
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

const agent = new Agent({ keepAlive: true });

/**
 * One POST with node:http; resolves with status, headers and the body as text.
 * @param {string} url @param {Record<string, string>} headers @param {string} body
 * @returns {Promise<{ statusCode: number, headers: import('node:http').IncomingHttpHeaders, body: string }>}
 */
function nodeRequest(url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', headers, agent, timeout: 5_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

/**
 * Runs the checks; throws an Error listing every failed one.
 * @param {(msg: string) => void} log
 */
export async function checkFloor(log) {
  const up = await scriptedUpstream();
  // Request i gets key i: plain, plain, stream, 429, hang.
  const floor = await startFloor({ origin: up.url, keys: ['k-plain-0', 'k-plain-1', 'k-stream', 'k-429', 'k-hang'], name: 'floor-check' });
  const client = new Client(floor.url, { headersTimeout: STEP_TIMEOUT_MS, bodyTimeout: STEP_TIMEOUT_MS });
  /** @type {string[]} */
  const failed = [];
  const expect = (/** @type {boolean} */ ok, /** @type {string} */ what) => {
    if (!ok) failed.push(what);
  };
  try {
    const reqBody = '{"model":"m","messages":[{"role":"user","content":"héllo"}],"n":1.50}';
    const headers = { 'content-type': 'application/json', authorization: 'Bearer client-secret', connection: 'keep-alive, x-hop', 'x-hop': 'drop me', 'x-keep': 'keep me' };
    const plainHeaders = { 'content-type': 'application/json', authorization: 'Bearer client-secret' };
    for (const i of [0, 1]) {
      // node:http, not undici, as the client here: undici refuses a Connection header that lists names.
      const res = await nodeRequest(floor.url, headers, reqBody);
      const text = res.body;
      const got = up.seen[i];
      expect(res.statusCode === 200 && text === PLAIN, `plain ${i}: status ${res.statusCode}, body byte-exact`);
      expect(res.headers['content-length'] === String(Buffer.byteLength(PLAIN)), `plain ${i}: Content-Length passed`);
      expect(res.headers['x-upstream'] === 'yes', `plain ${i}: upstream header passed`);
      expect(got?.auth === `Bearer k-plain-${i}`, `plain ${i}: key k-plain-${i} injected round-robin (got ${got?.auth})`);
      expect(got?.body.toString('utf8') === reqBody, `plain ${i}: request body byte-exact`);
      expect(got?.headers['x-keep'] === 'keep me' && got?.headers['x-hop'] === undefined, `plain ${i}: end-to-end header kept, Connection-listed one dropped`);
    }

    // The upstream sends no body byte until told: the head must arrive on its own.
    /** @type {import('undici').Dispatcher.ResponseData | undefined} */
    let s;
    try {
      s = await client.request({ path: '/v1/chat/completions', method: 'POST', headers: plainHeaders, body: '{"stream":true}' });
    } catch (err) {
      expect(false, `stream: the head did not reach the client before any chunk was sent (${/** @type {Error} */ (err).message})`);
    }
    if (s) {
      expect(s.statusCode === 200 && s.headers['content-type'] === 'text/event-stream', `stream: status ${s.statusCode}`);
      const it = s.body[Symbol.asyncIterator]();
      /** @type {string[]} */
      const reads = [];
      for (let i = 0; i < CHUNKS; i++) {
        up.streamWrite(`data: {"n":${i}}\n\n`);
        const next = await Promise.race([it.next(), sleep(STEP_TIMEOUT_MS).then(() => undefined)]);
        if (!next || next.done) {
          reads.push('(nothing)');
          break;
        }
        reads.push(String(next.value));
      }
      expect(reads.length === CHUNKS && reads.every((r, i) => r === `data: {"n":${i}}\n\n`), `stream: each chunk passed on alone as it came (got ${JSON.stringify(reads)})`);
      up.streamEnd();
      let rest = '';
      for (;;) {
        const next = await Promise.race([it.next(), sleep(STEP_TIMEOUT_MS).then(() => undefined)]);
        if (!next || next.done) break;
        rest += String(next.value);
      }
      expect(rest === 'data: [DONE]\n\n', `stream: ends with [DONE] (got ${JSON.stringify(rest)})`);
    }

    const r = await client.request({ path: '/v1/chat/completions', method: 'POST', headers: plainHeaders, body: reqBody });
    const rText = await r.body.text();
    expect(r.statusCode === 429 && r.headers['retry-after'] === '7' && rText === LIMITED, `429: passed through with Retry-After and body (got ${r.statusCode})`);

    const hang = await client.request({ path: '/v1/chat/completions', method: 'POST', headers: plainHeaders, body: '{"stream":true}' });
    for await (const _ of hang.body) break; // first chunk, then leave (destroys the client socket)
    const deadline = Date.now() + CANCEL_WAIT_MS;
    while (!up.hangClosed() && Date.now() < deadline) await sleep(20);
    expect(up.hangClosed(), `cancel: upstream request closed within ${CANCEL_WAIT_MS} ms of the client leaving`);
  } catch (err) {
    failed.push(`error: ${/** @type {Error} */ (err).message}`);
  } finally {
    await client.destroy().catch(() => {});
    agent.destroy();
    await floor.stop();
    up.close();
  }
  if (failed.length > 0) throw new Error(`the floor is not a correct pass-through, the bench would be meaningless:\n- ${failed.join('\n- ')}`);
  log('bench: floor self-check passed (plain x2 round-robin, stream, 429, cancel)');
}
