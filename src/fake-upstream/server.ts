// The fake OpenAI upstream: a plain node:http server (Fastify's per-request cost would dominate the
// benchmark) that answers each request as its key's script or default behaviour says.
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { parseBehavior } from './behavior-schema.js';
import type { Behavior, FakeUpstream, FakeUpstreamOptions, RecordedRequest } from './behaviors.js';
import { MISSING_KEY_BODY, RATE_LIMIT_BODY, UNAUTHORIZED_BODY } from './openai-errors.js';
import { windowExceededHeaders, xRateLimitHeaders } from './rate-limit-headers.js';
import { RateWindows } from './rate-window.js';
import { SCRIPTED_REQUEST_LIMIT, respond, sendJson } from './respond.js';
import type { Exchange, RespondEnv } from './respond.js';

export type {
  Behavior,
  FakeUpstream,
  FakeUpstreamOptions,
  RateLimitStyle,
  RecordedRequest,
} from './behaviors.js';

/** Loopback only: the fake has no business on other interfaces. */
export const DEFAULT_HOST = '127.0.0.1';

const OK: Behavior = Object.freeze({ kind: 'ok' });
const EMPTY = Buffer.alloc(0);
const BEARER = /^bearer\s+(\S+)\s*$/i;

export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const latencyMs = nonNegative(options.latencyMs ?? 0, 'latencyMs');
  const now = options.now ?? Date.now;
  const record = options.record ?? true;
  const accepted = options.acceptKeys === undefined ? undefined : new Set(options.acceptKeys);
  const limit = options.rateLimit;
  if (limit !== undefined) {
    nonNegative(limit.requests, 'rateLimit.requests');
    if (!Number.isInteger(limit.windowMs) || limit.windowMs < 1) {
      throw new TypeError('fake-upstream: rateLimit.windowMs must be a positive integer');
    }
  }
  const windows = limit === undefined ? undefined : new RateWindows(limit.requests, limit.windowMs);
  const env: RespondEnv = { latencyMs, now, scriptedLimit: limit?.requests ?? SCRIPTED_REQUEST_LIMIT };

  const defaults = new Map<string, Behavior>();
  Object.entries(options.keys ?? {}).forEach(([key, behavior], index) => {
    // The entry's position, not its key: keys are secrets and must not reach an error message.
    defaults.set(key, parseBehavior(behavior, `keys entry #${index + 1}`));
  });
  const scripts = new Map<string, Behavior[]>();
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let served = 0;

  const nextBehavior = (key: string | undefined): Behavior => {
    if (key === undefined) return OK;
    const queue = scripts.get(key);
    if (queue !== undefined) {
      const scripted = queue.shift();
      if (queue.length === 0) scripts.delete(key);
      if (scripted !== undefined) return scripted;
    }
    return defaults.get(key) ?? OK;
  };

  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer): void => {
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    const key = keyOf(req.headers);
    if (record) requests.push({ method, path: url, headers: req.headers, body, key, at: now() });
    const query = url.indexOf('?');
    const exchange: Exchange = {
      method,
      path: query === -1 ? url : url.slice(0, query),
      body,
      res,
      requestId: `req_fake_${++served}`,
    };
    if (accepted !== undefined && (key === undefined || !accepted.has(key))) {
      sendJson(exchange, 401, key === undefined ? MISSING_KEY_BODY : UNAUTHORIZED_BODY);
      return;
    }
    const behavior = nextBehavior(key);
    if (windows !== undefined && (behavior.kind === 'ok' || behavior.kind === 'stream')) {
      const decision = windows.take(key ?? '', now());
      if (!decision.allowed) {
        sendJson(exchange, 429, RATE_LIMIT_BODY, windowExceededHeaders(decision.limit, decision.resetMs));
        return;
      }
      respond(behavior, exchange, env, xRateLimitHeaders(decision.limit, decision.remaining, decision.resetMs));
      return;
    }
    respond(behavior, exchange, env);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      // concat copies, so a recorded body never aliases a buffer node:http may reuse.
      const body = chunks.length === 0 ? EMPTY : record || chunks.length > 1 ? Buffer.concat(chunks) : chunks[0];
      handle(req, res, body ?? EMPTY);
    });
    // An aborted upload just ends the exchange; there is nobody left to answer.
    req.on('error', () => res.destroy());
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? DEFAULT_HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${address.port}`,
    requests,
    script(key, ...behaviors) {
      const parsed = behaviors.map((behavior, index) => parseBehavior(behavior, `script() argument #${index + 2}`));
      const queue = scripts.get(key);
      if (queue === undefined) scripts.set(key, parsed);
      else queue.push(...parsed);
    },
    setDefault(key, behavior) {
      defaults.set(key, parseBehavior(behavior, 'setDefault()'));
    },
    reset() {
      requests.length = 0;
      scripts.clear();
      windows?.clear();
    },
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        // server.close() waits for open exchanges; hanging ones never finish on their own.
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

/** The bearer token, else x-api-key (Anthropic-style clients), else undefined. */
function keyOf(headers: IncomingHttpHeaders): string | undefined {
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const token = BEARER.exec(authorization)?.[1];
    if (token !== undefined) return token;
  }
  const apiKey = headers['x-api-key'];
  return typeof apiKey === 'string' && apiKey !== '' ? apiKey : undefined;
}

function nonNegative(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new TypeError(`fake-upstream: ${name} must be a non-negative integer`);
  }
  return value;
}
