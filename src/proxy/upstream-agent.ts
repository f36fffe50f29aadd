// The one undici Agent every attempt goes out on: keep-alive connection pools per upstream origin.
// keypool's own timeouts are per attempt (retry.headersTimeoutMs, idleTimeoutMs: attempt.ts passes
// them per request), so the Agent's defaults are off here.
import { Agent, buildConnector } from 'undici';

export interface UpstreamAgentOptions {
  readonly connectTimeoutMs: number;
}

export interface UpstreamAgent {
  readonly dispatcher: Agent;
  /**
   * A reload's new connect timeout, for connections opened from now on. The Agent itself is kept: a
   * request in flight during a reload may make its next attempt at any time, and a closed Agent would
   * refuse it locally (counted as the upstream's fault, it opened a healthy fallback's circuit).
   */
  setConnectTimeout(ms: number): void;
}

export function createUpstreamAgent(o: UpstreamAgentOptions): UpstreamAgent {
  let connector = buildConnector({ timeout: o.connectTimeoutMs });
  const dispatcher = new Agent({
    connect: (options, callback) => connector(options, callback),
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 30_000,
  });
  return {
    dispatcher,
    setConnectTimeout(ms) {
      connector = buildConnector({ timeout: ms });
    },
  };
}
