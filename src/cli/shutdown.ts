// Stopping keypool cleanly on SIGTERM / SIGINT: stop taking requests, let those in flight (streams too)
// finish for up to server.shutdownGraceMs, then cut what is left (a started stream gets its final error
// event), write state, leave the shared store (freeing this replica's slots at once), say in one line
// what was cut, and exit 0. A second signal exits at once, with a line. SIGHUP never kills: it is the
// reload signal (until reload exists it is logged and ignored).
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

export interface ShutdownDeps {
  readonly app: FastifyInstance;
  readonly logger: Logger;
  readonly graceMs: number;
  /** Writes what must survive (the state file). */
  readonly flush: () => Promise<void>;
  /** Ends the process with this code (process.exit in main; tests pass a spy). */
  readonly exit: (code: number) => void;
  /** SIGHUP; absent: logged and ignored. */
  readonly onReload?: () => void;
}

/** Longest wait for cut requests to write their answers before every connection is closed. */
const CUT_FLUSH_MS = 1_000;

/** Resolves when `done()` holds (checked every few ms), or after `ms` at the latest. */
async function settle(done: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  // One more turn for the last bytes to reach the sockets.
  await new Promise((r) => setImmediate(r));
}

/** How often connections that went idle during shutdown are closed. */
const IDLE_SWEEP_MS = 50;

/** Exit code of a second signal: stopped before shutdown finished. */
export const EXIT_FORCED = 130;

export function handleSignals(d: ShutdownDeps): { stop(signal: string): Promise<void> } {
  let stopping: Promise<void> | undefined;
  const stop = (signal: string): Promise<void> => {
    if (stopping !== undefined) {
      d.logger.warn({ signal }, 'second signal: exiting now, in-flight requests are dropped');
      d.logger.flush();
      d.exit(EXIT_FORCED);
      return stopping;
    }
    stopping = shutdown(d, signal);
    return stopping;
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => {
    if (d.onReload) d.onReload();
    else d.logger.info({ signal: 'SIGHUP' }, 'SIGHUP is the reload signal; nothing to reload yet, ignored');
  });
  return { stop };
}

async function shutdown(d: ShutdownDeps, signal: string): Promise<void> {
  const { app, logger } = d;
  const started = Date.now();
  const inflight = app.proxy.inflight;
  logger.info({ signal, inflight, graceMs: d.graceMs }, 'shutting down: no new requests, waiting for those in flight');
  app.proxy.closing = true;
  let cut = 0;
  const closing = app.close();
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<'grace'>((resolve) => {
    timer = setTimeout(() => resolve('grace'), d.graceMs);
  });
  // server.close() closes the connections idle at that moment; a keep-alive connection whose request ends
  // later would hold shutdown open until its client's keep-alive runs out. Close those as they go idle.
  const idle = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS);
  const first = await Promise.race([closing.then(() => 'closed' as const), grace]);
  clearTimeout(timer);
  clearInterval(idle);
  if (first === 'grace') {
    cut = app.proxy.cutAll('is shutting down');
    // The cut requests write their answers (503, a stream's last event) in the next ticks: let them leave
    // before whatever is still open (a client reading slowly, an idle keep-alive) is closed.
    await settle(() => app.proxy.inflight === 0, CUT_FLUSH_MS);
    app.server.closeAllConnections();
  }
  let code = 0;
  try {
    await closing;
    await d.flush();
  } catch (err) {
    logger.error({ err }, 'error while closing');
    code = 1;
  }
  logger.info({ signal, cut, ms: Date.now() - started }, cut > 0 ? `stopped; cut ${cut} request(s) still in flight after the grace period` : 'stopped');
  logger.flush();
  d.exit(code);
}
