// `keypool serve`: load the config, connect the shared store if one is configured, build the app,
// listen, and stop cleanly on signals (shutdown.ts).
import { buildApp } from '../app.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config/load.js';
import { createLogger } from '../logger.js';
import type { Paint } from './colour.js';
import { watchConfig } from './config-watch.js';
import { prettyDestination } from './pretty-log.js';
import { handleSignals } from './shutdown.js';

export interface ServeOptions {
  readonly config: Config;
  readonly warnings: readonly string[];
  /** The config file, watched for changes (and re-read on SIGHUP). */
  readonly file: string;
  /** Key and token files the config names, watched too. */
  readonly files: readonly string[];
  readonly port: number;
  readonly host: string;
  /** Human-readable log lines, painted with this (`--pretty`); absent: JSON lines. */
  readonly pretty?: Paint | undefined;
}

/** Exit code when keypool refuses to start as configured. */
const EXIT_REFUSED = 2;

/** Whether a listen address only takes connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

/** Runs until a signal stops it; resolves with the exit code. */
export async function serve(o: ServeOptions): Promise<number> {
  const { config } = o;
  if (!isLoopbackHost(o.host) && config.clients === undefined && !config.server.allowUnauthenticated) {
    process.stderr.write(
      `keypool: refusing to listen on ${o.host} without client tokens: anyone who reaches the port could spend the pool's keys.\n` +
        '  Add clients (clients: [{ name: agents, token: ${KEYPOOL_CLIENT_TOKEN} }]), or set server.allowUnauthenticated: true\n' +
        '  if something in front of keypool already authenticates callers.\n',
    );
    return EXIT_REFUSED;
  }
  const logger = createLogger(config.log.level, o.pretty === undefined ? undefined : prettyDestination(o.pretty));
  for (const w of o.warnings) logger.warn(w);
  // Loaded only when configured: ioredis alone adds megabytes to every process that never uses it.
  const store = config.state.redis
    ? new (await import('../state/redis-store.js')).RedisStore({ ...config.state.redis, disabledTtlMs: config.cooldown.disabledMs, logger })
    : undefined;
  await store?.connect();
  const app = await buildApp({ config, logger, store });
  const state = config.state.file
    ? (await import('../state/state-file.js')).StateFile.open({ file: config.state.file, pools: app.pools, clock: systemClock, logger, flushDelayMs: config.state.flushDelayMs })
    : undefined;
  const watcher = watchConfig(app, o.file, o.files, logger);
  const exited = new Promise<number>((resolve) => {
    handleSignals({
      app,
      logger,
      graceMs: config.server.shutdownGraceMs,
      flush: async () => {
        watcher.close();
        await state?.close();
      },
      exit: resolve,
      onReload: () => void watcher.reload('SIGHUP'),
    });
  });
  await app.listen({ port: o.port, host: o.host });
  logger.info({ upstreams: config.upstreams.map((u) => ({ name: u.name, prefix: u.prefix, keys: u.keys.length })) }, 'keypool ready');
  return exited;
}
