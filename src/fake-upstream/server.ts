// The fake upstream: a plain node:http server (Fastify's per-request cost would dominate the
// benchmark) that answers each request as its key's script or default behaviour says, in the formats
// of the provider it plays (personalities.ts).
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { parseBehavior } from './behavior-schema.js';
import type { Behavior, FakeUpstream, FakeUpstreamOptions, RecordedRequest } from './behaviors.js';
import { personalityFor } from './personalities.js';
import type { FakeRequest } from './personality.js';
import { RateWindows } from './rate-window.js';
import { SCRIPTED_REQUEST_LIMIT, respond, send } from './respond.js';
import type { Exchange, RespondEnv } from './respond.js';

export type {
  Behavior,
  FakeUpstream,
  FakeUpstreamOptions,
  Provider,
  RateLimitStyle,
  RecordedRequest,
} from './behaviors.js';
export { PROVIDERS } from './behaviors.js';

/** Loopback only: the fake has no business on other interfaces. */
export const DEFAULT_HOST = '127.0.0.1';

const OK: Behavior = Object.freeze({ kind: 'ok' });
const EMPTY = Buffer.alloc(0);

export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const personality = personalityFor(options.provider ?? 'openai');
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
  const env: RespondEnv = {
    personality,
    requestIdHeader: personality.requestIdHeader,
    latencyMs,
    now,
    scriptedLimit: limit?.requests ?? SCRIPTED_REQUEST_LIMIT,
  };

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
    const q = url.indexOf('?');
    const query = q === -1 ? '' : url.slice(q + 1);
    const key = personality.keyOf(req.headers, query);
    if (record) requests.push({ method, path: url, headers: req.headers, body, key, at: now() });
    const request: FakeRequest = { method, path: q === -1 ? url : url.slice(0, q), query, headers: req.headers, body };
    const exchange: Exchange = { request, res, requestId: `req_fake_${++served}` };
    if (accepted !== undefined && (key === undefined || !accepted.has(key))) {
      send(exchange, env, personality.refuseKey(request, key === undefined), 0);
      return;
    }
    const refusal = personality.precheck(request);
    if (refusal !== undefined) {
      send(exchange, env, refusal, 0);
      return;
    }
    const behavior = nextBehavior(key);
    if (windows !== undefined && (behavior.kind === 'ok' || behavior.kind === 'stream')) {
      const at = now();
      const decision = windows.take(key ?? '', at);
      if (!decision.allowed) {
        send(exchange, env, personality.windowExceeded(request, decision.limit, decision.resetMs, at), 0);
        return;
      }
      respond(behavior, exchange, env, personality.windowHeaders(decision.limit, decision.remaining, decision.resetMs, at));
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
    provider: personality.provider,
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

function nonNegative(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new TypeError(`fake-upstream: ${name} must be a non-negative integer`);
  }
  return value;
}
