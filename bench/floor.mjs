#!/usr/bin/env node
// @ts-check
// The honest floor: the cheapest correct Node pass-through doing keypool's job for one request and
// nothing more. node:http in, the request body buffered once (keypool must, to replay it on another
// key), a key injected round-robin, hop-by-hop headers stripped both ways, one undici Pool.dispatch()
// out with a raw handler, the response head and a plain JSON body leaving in one socket write, the
// head flushed at once only when there is no Content-Length (a stream), backpressure honoured, and a
// client that leaves cancels the upstream request. No retry, no rotation, no logging, no deadline.
// Every ratio in the bench is against this process. Why nothing more can be removed, line by line:
// the comments below and bench/README.md, "The floor".
//
//   node bench/floor.mjs --origin http://127.0.0.1:PORT --keys k1,k2 [--keys-file FILE] [--port 0]
// Prints `listening http://127.0.0.1:PORT` once it accepts connections.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values } = parseArgs({
  options: {
    origin: { type: 'string' },
    keys: { type: 'string', default: '' },
    'keys-file': { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
  },
});
if (!values.origin) throw new Error('--origin is required');
const keys = [
  ...values.keys.split(',').filter(Boolean),
  ...(values['keys-file'] ? readFileSync(values['keys-file'], 'utf8').split('\n').map((l) => l.trim()).filter(Boolean) : []),
];
if (keys.length === 0) throw new Error('give --keys or --keys-file');
// Built once: injecting a key is then one array slot, no string building per request.
const bearer = keys.map((k) => `Bearer ${k}`);

/** keypool's own default (server.bodyLimitBytes): a proxy that buffers must bound what it buffers. */
const BODY_LIMIT = 50 * 1024 * 1024;

// RFC 9110 §7.6.1: connection-specific fields a proxy must not forward, plus the de-facto ones.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
// The client's credentials and what undici sets itself: host (from the origin), content-length (from
// the buffered body), expect (undici refuses it). Exactly keypool's list for the same reasons.
const DROP_REQUEST = new Set(['authorization', 'x-api-key', 'api-key', 'host', 'content-length', 'expect', 'openai-organization', 'openai-project']);

/**
 * Names a `Connection` header lists (RFC 9110 §7.6.1), or undefined for the usual values that list
 * none: the parse is skipped on the hot path, as keypool does.
 * @param {string | string[] | undefined} value
 */
function connectionListed(value) {
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined;
  const names = new Set();
  for (const n of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const t = n.trim().toLowerCase();
    if (t !== '') names.add(t);
  }
  return names.size > 0 ? names : undefined;
}

// Pool, not Agent: the floor has one origin, so the Agent's origin-to-pool map is work it need not do.
// connections unlimited (undici's default) so 1,000 concurrent streams each get a socket; header and
// body timeouts off as in keypool (it bounds attempts with its own deadline; the floor has none, a
// client that leaves still cancels), so undici arms no timer per request.
const pool = new Pool(values.origin, { keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 });
let next = 0;

const kExchange = Symbol('exchange');
const BAD_GATEWAY = JSON.stringify({ error: { message: 'floor: upstream failed', type: 'proxy_error', code: 'upstream_error' } });
const TOO_LARGE = JSON.stringify({ error: { message: 'floor: body too large', type: 'invalid_request_error', code: 'body_too_large' } });

/**
 * One client request: its state and, at once, the undici dispatch handler (undici's native, raw
 * handler shape: onConnect / onHeaders / onData / onComplete / onError). One object per request; the
 * event listeners below are shared functions that find it through a symbol, so no closure is built
 * per request.
 */
class Exchange {
  /** @param {import('node:http').IncomingMessage} req @param {import('node:http').ServerResponse} res */
  constructor(req, res) {
    this.req = req;
    this.res = res;
    /** @type {Buffer[]} */
    this.chunks = [];
    this.size = 0;
    /** @type {((err?: Error) => void) | null} undici's abort for this request, once connected */
    this.abort = null;
    /** @type {(() => void) | null} undici's resume, while the client's socket is full */
    this.resume = null;
    this.gone = false;
  }

  /** The body is all here: send it, once, with the key of this turn. */
  send() {
    const { req } = this;
    const body = this.chunks.length === 0 ? null : this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    // Headers copied once, straight into the flat [name, value, ...] form undici takes.
    const h = req.headers;
    const listed = connectionListed(h.connection);
    /** @type {string[]} */
    const headers = [];
    for (const name in h) {
      const v = h[name];
      if (v === undefined || HOP_BY_HOP.has(name) || DROP_REQUEST.has(name) || listed?.has(name)) continue;
      if (typeof v === 'string') headers.push(name, v);
      else for (const one of v) headers.push(name, one);
    }
    headers.push('authorization', bearer[next]);
    next = next === bearer.length - 1 ? 0 : next + 1;
    pool.dispatch({ path: req.url ?? '/', method: /** @type {import('undici').Dispatcher.HttpMethod} */ (req.method), headers, body }, this);
  }

  /** @param {(err?: Error) => void} abort */
  onConnect(abort) {
    // The client may have left while the request waited for a connection.
    if (this.gone) abort();
    else this.abort = abort;
  }

  /**
   * @param {number} statusCode
   * @param {Buffer[]} raw  [name, value, ...] as received
   * @param {() => void} resume
   */
  onHeaders(statusCode, raw, resume) {
    if (statusCode < 200) return true; // 1xx: the final head follows
    const { res } = this;
    /** @type {string[]} */
    const out = [];
    let hasLength = false;
    /** @type {string | undefined} */
    let connection;
    // One pass over the head as received: each name decoded once, each kept pair copied once.
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString('latin1');
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower)) {
        if (lower === 'connection') connection = raw[i + 1].toString('latin1');
        continue;
      }
      if (lower === 'content-length') hasLength = true;
      out.push(name, raw[i + 1].toString('latin1'));
    }
    // Names the upstream listed in Connection are dropped too; upstreams seldom list any, so this
    // second look happens only then.
    const listed = connectionListed(connection);
    if (listed) {
      for (let i = out.length - 2; i >= 0; i -= 2) if (listed.has(out[i].toLowerCase())) out.splice(i, 2);
      hasLength = out.some((v, i) => i % 2 === 0 && v.toLowerCase() === 'content-length');
    }
    res.writeHead(statusCode, out);
    // A stream's first event may be seconds away: send the head now. A plain answer (it has a
    // Content-Length) is not flushed, so its head and body leave in one write.
    if (!hasLength) res.flushHeaders();
    this.resume = resume;
    return true;
  }

  /** @param {Buffer} chunk */
  onData(chunk) {
    // false pauses the upstream socket until the client's drains (backpressure, per stream).
    if (this.res.write(chunk)) return true;
    this.res.once('drain', onDrain);
    return false;
  }

  onComplete() {
    this.res.end();
  }

  /** @param {Error} err */
  onError(err) {
    const { res } = this;
    if (this.gone) return; // we aborted it because the client left
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BAD_GATEWAY) });
      res.end(BAD_GATEWAY);
    } else {
      res.destroy(err); // bytes are with the client already: all that can be done is to close
    }
  }
}

/** @this {import('node:http').IncomingMessage} @param {Buffer} chunk */
function onReqData(chunk) {
  const x = /** @type {Exchange} */ (/** @type {any} */ (this)[kExchange]);
  x.size += chunk.length;
  if (x.size > BODY_LIMIT) {
    this.off('data', onReqData).off('end', onReqEnd);
    x.chunks = [];
    x.res.writeHead(413, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(TOO_LARGE), connection: 'close' });
    x.res.end(TOO_LARGE);
    return;
  }
  x.chunks.push(chunk);
}

/** @this {import('node:http').IncomingMessage} */
function onReqEnd() {
  const x = /** @type {Exchange} */ (/** @type {any} */ (this)[kExchange]);
  if (!x.gone) x.send();
}

/** The client's response closed: if it did not finish, the client left, and the upstream is cancelled. */
/** @this {import('node:http').ServerResponse} */
function onResClose() {
  if (this.writableFinished) return;
  const x = /** @type {Exchange} */ (/** @type {any} */ (this)[kExchange]);
  x.gone = true;
  x.abort?.();
}

/** @this {import('node:http').ServerResponse} */
function onDrain() {
  /** @type {Exchange} */ (/** @type {any} */ (this)[kExchange]).resume?.();
}

const server = createServer((req, res) => {
  const x = new Exchange(req, res);
  /** @type {any} */ (req)[kExchange] = x;
  /** @type {any} */ (res)[kExchange] = x;
  req.on('data', onReqData).on('end', onReqEnd);
  res.on('close', onResClose);
});
server.keepAliveTimeout = 30_000;
server.listen(Number(values.port), values.host, () => {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  process.stdout.write(`listening http://${values.host}:${port}\n`);
});

const shutdown = () => {
  server.close();
  server.closeAllConnections();
  void pool.destroy();
  setTimeout(() => process.exit(0), 500).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
