// A request's id, as keypool's answers and log lines carry it: the client's own `x-request-id` (bounded),
// else a fresh one. Every answer keypool writes, proxied or its own (404, shutdown, internal error), says it.
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { headerValue } from './headers.js';

/** Longest client request id kept (and echoed back). */
export const MAX_REQUEST_ID = 128;

export function requestIdOf(headers: IncomingHttpHeaders): string {
  return headerValue(headers['x-request-id'])?.slice(0, MAX_REQUEST_ID) ?? randomUUID();
}
