// The WebSocket fake upstream: answers each handshake as its key's script or default says (101, or
// 429 / 401 / 403 / 5xx with OpenAI's bodies and headers, or never), then plays the path's API
// (ws-session.ts). Standalone (`startWsFakeUpstream`) or on an existing node:http server
// (`attachWsFake`, so one port serves the HTTP fake and WebSockets like api.openai.com does).
import { createServer, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { FORBIDDEN_BODY, INSUFFICIENT_QUOTA_BODY, MISSING_KEY_BODY, ORG_DISABLED_BODY, RATE_LIMIT_BODY, SERVER_ERROR_BODY, UNAUTHORIZED_BODY } from './openai-errors.js';
import { scriptedRateLimitHeaders } from './rate-limit-headers.js';
import { DEFAULT_RATE_LIMIT_MS, SCRIPTED_REQUEST_LIMIT } from './respond.js';
import { parseWsHandshake, type KeySource, type RecordedHandshake, type WsFakeControl, type WsFakeOptions, type WsFakeSession, type WsFakeUpstream, type WsHandshake } from './ws-behaviors.js';
import { startSession } from './ws-session.js';

export type { WsFakeOptions, WsFakeSession, WsFakeUpstream, WsHandshake } from './ws-behaviors.js';

const ACCEPT: WsHandshake = Object.freeze({ kind: 'accept' });
const BEARER = /^bearer\s+(\S+)\s*$/i;
const KEY_PROTOCOL = 'openai-insecure-api-key.';
const CREDENTIAL = /^openai-(insecure-api-key|organization|project)\./i;
const DEFAULT_DELTAS = 3;

/** Serves WebSocket upgrades on `server` (its 'upgrade' event); other requests are left to it. */
export function attachWsFake(server: Server, options: WsFakeOptions = {}): WsFakeControl {
  const now = options.now ?? Date.now;
  const deltas = options.deltas ?? DEFAULT_DELTAS;
  const accepted = options.acceptKeys === undefined ? undefined : new Set(options.acceptKeys);
  const defaults = new Map<string, WsHandshake>();
  Object.entries(options.keys ?? {}).forEach(([key, b], i) => defaults.set(key, parseWsHandshake(b, `keys entry #${i + 1}`)));
  const scripts = new Map<string, WsHandshake[]>();
  const handshakes: RecordedHandshake[] = [];
  const sessions: WsFakeSession[] = [];
  const sockets = new Set<Duplex>();
  let ids = 0;
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    clientTracking: false,
    // `realtime` when offered, else the first subprotocol that is not a credential.
    handleProtocols: (offered) => (offered.has('realtime') ? 'realtime' : ([...offered].find((p) => !CREDENTIAL.test(p)) ?? false)),
  });
  const requestIds = new WeakMap<IncomingMessage, string>();
  wss.on('headers', (lines, req) => lines.push(`x-request-id: ${requestIds.get(req) ?? 'req_fake_ws'}`));

  const next = (key: string | undefined): WsHandshake => {
    if (key === undefined) return ACCEPT;
    const queue = scripts.get(key);
    const scripted = queue?.shift();
    if (queue !== undefined && queue.length === 0) scripts.delete(key);
    return scripted ?? defaults.get(key) ?? ACCEPT;
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const path = req.url ?? '/';
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '');
    const { key, source } = keyOf(req.headers, protocols);
    const record: RecordedHandshake = { path, headers: req.headers, key, keySource: source, protocols, status: 0, at: now() };
    handshakes.push(record);
    const requestId = `req_fake_ws_${++ids}`;
    const answer = (status: number, body: Buffer, headers: Record<string, string> = {}): void => {
      record.status = status;
      writeResponse(socket, status, body, { 'x-request-id': requestId, ...headers });
    };
    const behavior = accepted !== undefined && (key === undefined || !accepted.has(key)) ? undefined : next(key);
    if (behavior === undefined) return answer(401, key === undefined ? MISSING_KEY_BODY : UNAUTHORIZED_BODY);
    switch (behavior.kind) {
      case 'accept': {
        const go = (): void => {
          if (socket.destroyed) return;
          requestIds.set(req, requestId);
          wss.handleUpgrade(req, socket, head, (ws) => {
            record.status = 101;
            sessions.push(startSession(ws, path, key, { deltas, nextId: () => ++ids }));
          });
        };
        if ((behavior.delayMs ?? 0) > 0) setTimeout(go, behavior.delayMs);
        else go();
        return;
      }
      case 'rate_limit':
        return answer(429, RATE_LIMIT_BODY, scriptedRateLimitHeaders(behavior.style ?? 'retry-after', behavior.ms ?? DEFAULT_RATE_LIMIT_MS, now(), SCRIPTED_REQUEST_LIMIT));
      case 'insufficient_quota':
        return answer(429, INSUFFICIENT_QUOTA_BODY);
      case 'unauthorized':
        return answer(401, UNAUTHORIZED_BODY);
      case 'forbidden':
        return answer(403, FORBIDDEN_BODY);
      case 'key_revoked':
        return answer(403, ORG_DISABLED_BODY);
      case 'server_error':
        return answer(behavior.status ?? 500, SERVER_ERROR_BODY);
      case 'hang':
        // Read (and drop) what comes, so a client that gives up is seen leaving.
        socket.resume();
        socket.once('end', () => socket.destroy());
        return;
      case 'status':
        return answer(behavior.status, Buffer.from(behavior.body ?? ''), behavior.headers);
    }
  });

  return {
    handshakes,
    sessions,
    get connections() {
      return sockets.size;
    },
    script(key, ...behaviors) {
      const parsed = behaviors.map((b, i) => parseWsHandshake(b, `script() argument #${i + 2}`));
      const queue = scripts.get(key);
      if (queue === undefined) scripts.set(key, parsed);
      else queue.push(...parsed);
    },
    setDefault(key, behavior) {
      defaults.set(key, parseWsHandshake(behavior, 'setDefault()'));
    },
    reset() {
      handshakes.length = 0;
      sessions.length = 0;
      scripts.clear();
    },
  };
}

/** A fake on its own port: WebSocket upgrades as above; plain HTTP requests get 426. */
export async function startWsFakeUpstream(options: WsFakeOptions = {}): Promise<WsFakeUpstream> {
  const server = createServer((_req, res) => {
    const body = JSON.stringify({ error: { message: 'This fake serves WebSocket upgrades only.', type: 'invalid_request_error', param: null, code: null } });
    res.writeHead(426, { 'content-type': 'application/json', upgrade: 'websocket', connection: 'Upgrade' });
    res.end(body);
  });
  const all = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    all.add(s);
    s.once('close', () => all.delete(s));
  });
  const control = attachWsFake(server, options);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${address.port}`,
    get handshakes() {
      return control.handshakes;
    },
    get sessions() {
      return control.sessions;
    },
    get connections() {
      return control.connections;
    },
    script: (key, ...b) => control.script(key, ...b),
    setDefault: (key, b) => control.setDefault(key, b),
    reset: () => control.reset(),
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err === undefined ? resolve() : reject(err)));
        // Upgraded and hanging sockets never end on their own.
        for (const s of all) s.destroy();
      });
      return closing;
    },
  };
}

/** The bearer token, else x-api-key, else api-key (Azure), else OpenAI's browser subprotocol. */
function keyOf(headers: IncomingHttpHeaders, protocols: readonly string[]): { key: string | undefined; source: KeySource | undefined } {
  const bearer = headers.authorization === undefined ? undefined : BEARER.exec(headers.authorization)?.[1];
  if (bearer !== undefined) return { key: bearer, source: 'authorization' };
  for (const name of ['x-api-key', 'api-key'] as const) {
    const v = headers[name];
    if (typeof v === 'string' && v !== '') return { key: v, source: name };
  }
  const p = protocols.find((x) => x.startsWith(KEY_PROTOCOL));
  if (p !== undefined) return { key: p.slice(KEY_PROTOCOL.length), source: 'subprotocol' };
  return { key: undefined, source: undefined };
}

function writeResponse(socket: Duplex, status: number, body: Buffer, headers: Record<string, string>): void {
  if (socket.destroyed) return;
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}`];
  const all: Record<string, string> = { 'content-type': 'application/json', ...lowerKeys(headers), 'content-length': String(body.length), connection: 'close' };
  for (const [name, value] of Object.entries(all)) lines.push(`${name}: ${value.replace(/[\r\n]/g, ' ')}`);
  socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]), () => socket.destroy());
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}
