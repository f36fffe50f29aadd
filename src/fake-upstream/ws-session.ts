// One accepted WebSocket session of the fake: records what it receives and answers as its path's API
// does (ws-events.ts), echoes binary frames and anything on other paths, and obeys `fake.*` control
// events a test (or a user poking at their agent) sends: flood the client, close with a code, ping,
// drop the connection.
import WebSocket from 'ws';
import type { FloodState, ReceivedMessage, WsFakeSession } from './ws-behaviors.js';
import { apiOf, realtimeResponseEvents, realtimeSession, realtimeSessionCreated, responsesEvents, unknownEventError } from './ws-events.js';

/** A flood stops writing while this much is unflushed on its socket, and goes on below half of it. */
const FLOOD_HIGH_WATER = 1024 * 1024;
const MAX_FLOOD_COUNT = 1_000_000;
const MAX_FLOOD_BYTES = 16 * 1024 * 1024;

export interface SessionEnv {
  readonly deltas: number;
  /** A fresh id for response and session ids. */
  readonly nextId: () => number;
}

export function startSession(ws: WebSocket, path: string, key: string | undefined, env: SessionEnv): WsFakeSession {
  const api = apiOf(path);
  const received: ReceivedMessage[] = [];
  const pongs: Buffer[] = [];
  const pings: Buffer[] = [];
  const model = new URLSearchParams(path.split('?')[1] ?? '').get('model') ?? 'gpt-fake';
  const sessionId = env.nextId();
  const sendEvent = (e: unknown): void => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(e));
  };
  const session: WsFakeSession = {
    path,
    key,
    protocol: ws.protocol,
    received,
    pongs,
    pings,
    closed: undefined,
    flood: undefined,
    send: (data, binary) => ws.send(data, { binary: binary ?? typeof data !== 'string' }),
    ping: (data) => ws.ping(data ?? Buffer.alloc(0)),
    close: (code, reason) => ws.close(code, reason),
    terminate: () => ws.terminate(),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
  ws.on('error', () => {
    // ws closes the connection after an error; 'close' records it.
  });
  ws.on('close', (code, reason) => (session.closed = { code, reason: reason.toString('utf8') }));
  ws.on('ping', (data) => pings.push(data));
  ws.on('pong', (data) => pongs.push(data));
  ws.on('message', (raw, isBinary) => {
    const data = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
    received.push({ data, isBinary });
    const event = isBinary ? undefined : parseEvent(data);
    if (event === undefined) {
      ws.send(data, { binary: isBinary });
      return;
    }
    if (event.type.startsWith('fake.')) {
      control(ws, session, event);
      return;
    }
    if (api === 'responses' && event.type === 'response.create') {
      const m = typeof event.model === 'string' ? event.model : model;
      for (const e of responsesEvents(env.nextId(), m, env.deltas)) sendEvent(e);
    } else if (api === 'realtime' && event.type === 'response.create') {
      for (const e of realtimeResponseEvents(env.nextId(), env.deltas)) sendEvent(e);
    } else if (api === 'realtime' && event.type === 'session.update') {
      const update = typeof event.session === 'object' && event.session !== null ? (event.session as Record<string, unknown>) : {};
      sendEvent({ type: 'session.updated', event_id: `event_fake_${env.nextId()}`, session: realtimeSession(sessionId, model, update) });
    } else if (api === 'realtime' && event.type === 'input_audio_buffer.append') {
      // Audio goes into the buffer silently, as on the real API.
    } else if (api === 'echo') {
      ws.send(data, { binary: false });
    } else {
      sendEvent(unknownEventError(event.type));
    }
  });
  if (api === 'realtime') sendEvent(realtimeSessionCreated(sessionId, model));
  return session;
}

interface ClientEvent {
  readonly type: string;
  readonly [field: string]: unknown;
}

function parseEvent(data: Buffer): ClientEvent | undefined {
  try {
    const v: unknown = JSON.parse(data.toString('utf8'));
    if (typeof v === 'object' && v !== null && typeof (v as { type?: unknown }).type === 'string') return v as ClientEvent;
  } catch {
    // not JSON: echoed
  }
  return undefined;
}

function control(ws: WebSocket, session: WsFakeSession, e: ClientEvent): void {
  switch (e.type) {
    case 'fake.flood':
      session.flood = flood(ws, int(e.count, 1, MAX_FLOOD_COUNT, 10), int(e.bytes, 8, MAX_FLOOD_BYTES, 1024), e.binary !== false);
      return;
    case 'fake.close':
      ws.close(int(e.code, 1000, 4999, 1000), typeof e.reason === 'string' ? e.reason.slice(0, 100) : '');
      return;
    case 'fake.ping':
      ws.ping(Buffer.from(typeof e.data === 'string' ? e.data.slice(0, 100) : ''));
      return;
    case 'fake.terminate':
      ws.terminate();
      return;
    default:
      ws.send(JSON.stringify(unknownEventError(e.type)));
  }
}

function int(v: unknown, min: number, max: number, fallback: number): number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : fallback;
}

/**
 * Sends `count` messages of `bytes` bytes as fast as the socket takes them, each carrying its sequence
 * number (binary: the first 4 bytes, big-endian; text: a `fake.chunk` event). The fake's own memory stays
 * bounded: it waits while its socket has FLOOD_HIGH_WATER unflushed.
 */
function flood(ws: WebSocket, count: number, bytes: number, binary: boolean): FloodState {
  const state: FloodState = { count, sent: 0, blocked: false };
  let pending = 0;
  const pump = (): void => {
    while (state.sent < count && ws.readyState === WebSocket.OPEN) {
      if (pending >= FLOOD_HIGH_WATER) {
        state.blocked = true;
        return;
      }
      const msg = floodMessage(state.sent, bytes, binary);
      pending += msg.length;
      state.sent++;
      ws.send(msg, { binary }, () => {
        pending -= msg.length;
        if (state.blocked && pending <= FLOOD_HIGH_WATER / 2) {
          state.blocked = false;
          setImmediate(pump);
        }
      });
    }
  };
  pump();
  return state;
}

function floodMessage(seq: number, bytes: number, binary: boolean): Buffer {
  if (binary) {
    const b = Buffer.alloc(bytes, 0x61);
    b.writeUInt32BE(seq, 0);
    return b;
  }
  const head = `{"type":"fake.chunk","seq":${seq},"pad":"`;
  return Buffer.from(`${head}${'a'.repeat(Math.max(0, bytes - head.length - 2))}"}`);
}
