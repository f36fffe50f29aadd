#!/usr/bin/env node
// @ts-check
// The floor: the least a Node proxy can do. node:http in, undici Pool.stream() out, a key injected
// round-robin, hop-by-hop headers stripped, the response streamed back as it arrives. No body
// buffering, no retry, no rotation. keypool is judged by how close it stays to this.
//
//   node bench/floor.mjs --origin http://127.0.0.1:PORT --keys k1,k2 [--keys-file FILE] [--port 0]
// Prints `listening http://127.0.0.1:PORT` once it accepts connections.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
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
const bearer = keys.map((k) => `Bearer ${k}`);

// RFC 9110 §7.6.1: connection-specific fields that a proxy must not forward.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * Copy headers without hop-by-hop ones (and those named in `Connection`) or the `drop` set.
 * @param {Record<string, string | string[] | undefined>} h
 * @param {Set<string>} [drop]
 */
function forwardable(h, drop) {
  /** @type {Record<string, string | string[]>} */
  const out = {};
  const named = typeof h.connection === 'string' ? h.connection.toLowerCase().split(',').map((s) => s.trim()) : [];
  for (const name in h) {
    const v = h[name];
    if (v === undefined || HOP_BY_HOP.has(name) || named.includes(name) || drop?.has(name)) continue;
    out[name] = v;
  }
  return out;
}

const DROP_REQUEST = new Set(['host', 'authorization']);
// Unlimited connections (undici's default) so 1,000 concurrent streams each get one.
const pool = new Pool(values.origin, { keepAliveTimeout: 30_000 });
let next = 0;

const server = createServer((req, res) => {
  const headers = forwardable(req.headers, DROP_REQUEST);
  headers.authorization = bearer[next];
  next = (next + 1) % bearer.length;
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  pool.stream(
    {
      path: req.url ?? '/',
      method: /** @type {import('undici').Dispatcher.HttpMethod} */ (req.method),
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
      signal: ac.signal,
      opaque: res,
    },
    ({ statusCode, headers: upstreamHeaders, opaque }) => {
      const out = /** @type {import('node:http').ServerResponse} */ (opaque);
      out.writeHead(statusCode, forwardable(/** @type {Record<string, string | string[]>} */ (upstreamHeaders)));
      // Send the head now: a client of a slow stream should not wait for the first chunk to see it.
      out.flushHeaders();
      return out;
    },
    (err) => {
      if (!err) return;
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'floor: upstream failed', type: 'proxy_error', code: 'upstream_error' } }));
      } else {
        res.destroy(err);
      }
    },
  );
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
