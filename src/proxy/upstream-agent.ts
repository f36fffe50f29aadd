// The one undici Agent every attempt goes out on: keep-alive connection pools per upstream origin.
// keypool's own timeouts are per attempt (retry.headersTimeoutMs, idleTimeoutMs: attempt.ts passes
// them per request), so the Agent's defaults are off here.
import { Agent } from 'undici';

export interface UpstreamAgentOptions {
  readonly connectTimeoutMs: number;
}

export function createUpstreamAgent(o: UpstreamAgentOptions): Agent {
  return new Agent({
    connect: { timeout: o.connectTimeoutMs },
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 30_000,
  });
}
