// `keypool serve`: load the config, connect the shared store if one is configured, build the app,
// listen, and stop cleanly on signals (shutdown.ts).
import { buildApp } from '../app.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config/load.js';
import { createLogger } from '../logger.js';
import type { Paint } from './colour.js';
import { prettyDestination } from './pretty-log.js';
import { handleSignals } from './shutdown.js';

export interface ServeOptions {
  readonly config: Config;
  readonly warnings: readonly string[];
  readonly port: number;
  readonly host: string;
  /** Human-readable log lines, painted with this (`--pretty`); absent: JSON lines. */
  readonly pretty?: Paint | undefined;
}

/** Runs until a signal stops it; resolves with the exit code. */
export async function serve(o: ServeOptions): Promise<number> {
  const { config } = o;
  const logger = createLogger(config.log.level, o.pretty === undefined ? undefined : prettyDestination(o.pretty));
  for (const w of o.warnings) logger.warn(w);
  // Loaded only when configured: ioredis alone adds megabytes to every process that never uses it.
  const store = config.state.redis
    ? new (await import('../state/redis-store.js')).RedisStore({ ...config.state.redis, logger })
    : undefined;
  await store?.connect();
  const app = await buildApp({ config, logger, store });
  const state = config.state.file
    ? (await import('../state/state-file.js')).StateFile.open({ file: config.state.file, pools: app.pools, clock: systemClock, logger, flushDelayMs: config.state.flushDelayMs })
    : undefined;
  const exited = new Promise<number>((resolve) => {
    handleSignals({ app, logger, graceMs: config.server.shutdownGraceMs, flush: async () => state?.close(), exit: resolve });
  });
  await app.listen({ port: o.port, host: o.host });
  logger.info({ upstreams: config.upstreams.map((u) => ({ name: u.name, prefix: u.prefix, keys: u.keys.length })) }, 'keypool ready');
  return exited;
}
