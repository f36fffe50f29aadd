// Sends probes over HTTP: its own undici Agent (probes never queue behind proxied traffic), a time
// limit per probe through the Clock, and at most PROBE_BODY_CAP bytes of an answer read (blame needs the
// start of an error body, nothing more). A failure is reported as a code, never as a message that may
// quote the URL.
import { Agent, request } from 'undici';
import type { Clock } from '../clock.js';
import type { ProbeAnswer } from './classify.js';
import type { ProbeRequest } from './probe-request.js';

/** Bytes of an answer kept: blame scans the first 8 KiB. */
export const PROBE_BODY_CAP = 16 * 1024;

export type ProbeSend = (req: ProbeRequest, signal?: AbortSignal) => Promise<ProbeAnswer>;

export interface ProbeSender {
  readonly send: ProbeSend;
  close(): Promise<void>;
}

export interface HttpSenderOptions {
  readonly clock: Clock;
  /** Longest one probe may take, connect to last byte read (health.probeTimeoutMs). */
  readonly timeoutMs: number;
}

export function createHttpSender(o: HttpSenderOptions): ProbeSender {
  const agent = new Agent({ connect: { timeout: o.timeoutMs }, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 10_000 });
  const send: ProbeSend = async (req, outer) => {
    const ac = new AbortController();
    let timedOut = false;
    const cancel = o.clock.timer(o.timeoutMs, () => {
      timedOut = true;
      ac.abort();
    });
    const onOuter = (): void => ac.abort();
    outer?.addEventListener('abort', onOuter, { once: true });
    if (outer?.aborted === true) ac.abort();
    try {
      const res = await request(req.url, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        dispatcher: agent,
        signal: ac.signal,
      });
      const body = await readCapped(res.body);
      return { kind: 'answered', status: res.statusCode, headers: res.headers, body };
    } catch (err) {
      return { kind: 'failed', reason: timedOut ? 'timeout' : ac.signal.aborted ? 'aborted' : failureCode(err) };
    } finally {
      cancel();
      outer?.removeEventListener('abort', onOuter);
    }
  };
  return { send, close: () => agent.close() };
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= PROBE_BODY_CAP) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, PROBE_BODY_CAP).toString('utf8');
}

/**
 * An HTTP failure as a code (its cause's, for wrapped errors): ECONNREFUSED, ENOTFOUND, UND_ERR_SOCKET,
 * `timeout` for an AbortSignal.timeout. Never the message: it may quote the URL.
 */
export function failureCode(err: unknown): string {
  if ((err as { name?: unknown } | null)?.name === 'TimeoutError') return 'timeout';
  for (let e: unknown = err, i = 0; e !== undefined && e !== null && i < 3; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code)) return code;
  }
  return 'error';
}
