#!/usr/bin/env node
// keypool's command line: serve, check, demo, fake-upstream. Parses arguments, loads config, wires
// the app and handles signals; everything else lives in the modules it calls.
import { parseArgs } from 'node:util';
import { buildApp } from './app.js';
import { systemClock } from './clock.js';
import { loadConfigFile, type Config } from './config/load.js';
import { ConfigError } from './errors.js';
import { createLogger } from './logger.js';

const USAGE = `Usage:
  keypool serve [--config FILE] [--port N] [--host H]   run the proxy (FILE defaults to $KEYPOOL_CONFIG)
  keypool check [--config FILE]                         validate a config and print the pool (masked)
  keypool demo [--requests N] [--concurrency N]         watch rotation against a built-in fake upstream
  keypool fake-upstream [--host H] [--port N] [--latency-ms N] [--rate-limit R/WINDOW_MS]
                        [--keys-json FILE] [--no-record]  run the fake OpenAI upstream on its own
`;

/** Exit code for bad usage or a bad config. */
const EXIT_USAGE = 2;
/** How long shutdown waits for in-flight requests before it gives up on them. */
const SHUTDOWN_GRACE_MS = 10_000;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'check':
      return check(rest);
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo(rest);
    }
    case 'fake-upstream': {
      const { runFakeUpstreamCli } = await import('./fake-upstream/cli.js');
      await runFakeUpstreamCli(rest);
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? EXIT_USAGE : 0;
    default:
      process.stderr.write(`keypool: unknown command ${command}\n${USAGE}`);
      return EXIT_USAGE;
  }
}

function configPath(values: { config?: string | undefined }): string | undefined {
  return values.config ?? process.env.KEYPOOL_CONFIG;
}

function loadOrExplain(file: string | undefined): { config: Config; warnings: string[] } | undefined {
  if (file === undefined) {
    process.stderr.write('keypool: no config: pass --config FILE or set KEYPOOL_CONFIG\n');
    return undefined;
  }
  try {
    return loadConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`keypool: invalid config ${file}:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n`);
    return undefined;
  }
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, port: { type: 'string', short: 'p' }, host: { type: 'string' } },
    strict: true,
  });
  const loaded = loadOrExplain(configPath(values));
  if (!loaded) return EXIT_USAGE;
  const { config, warnings } = loaded;
  const port = values.port === undefined ? config.server.port : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`keypool: --port: expected a port number, got ${values.port}\n`);
    return EXIT_USAGE;
  }
  const host = values.host ?? config.server.host;

  const logger = createLogger(config.log.level);
  for (const w of warnings) logger.warn(w);
  // Loaded only when configured: ioredis alone adds megabytes to every process that never uses it.
  const store = config.state.redis
    ? new (await import('./state/redis-store.js')).RedisStore({ ...config.state.redis, logger })
    : undefined;
  await store?.connect();
  const app = await buildApp({ config, logger, store });
  const state = config.state.file
    ? (await import('./state/state-file.js')).StateFile.open({ file: config.state.file, pools: app.pools, clock: systemClock, logger, flushDelayMs: config.state.flushDelayMs })
    : undefined;
  await app.listen({ port, host });
  logger.info(
    { upstreams: config.upstreams.map((u) => ({ name: u.name, prefix: u.prefix, keys: u.keys.length })) },
    'keypool ready',
  );

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'shutting down');
      const force = setTimeout(() => {
        logger.warn('in-flight requests did not finish in time; exiting');
        void (state?.close() ?? Promise.resolve()).finally(resolve);
      }, SHUTDOWN_GRACE_MS);
      force.unref();
      app
        .close()
        .then(() => state?.close())
        .then(
          () => resolve(),
          (err: unknown) => {
            logger.error({ err }, 'error while closing');
            resolve();
          },
        );
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

async function check(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  const file = configPath(values);
  const loaded = loadOrExplain(file);
  if (!loaded) return EXIT_USAGE;
  const { config, warnings } = loaded;
  const lines = [`config ${file} is valid`];
  for (const w of warnings) lines.push(`warning: ${w}`);
  lines.push(`listen ${config.server.host}:${config.server.port}`);
  for (const u of config.upstreams) {
    lines.push(`upstream ${u.name}: ${u.prefix} -> ${u.origin}${u.basePath} (${u.keys.length} key(s), header ${u.authHeader})`);
    for (const k of u.keys) lines.push(`  ${k.name.padEnd(16)} ${k.masked().padEnd(12)} fp:${k.fingerprint}`);
  }
  lines.push(
    `retry: maxRetries ${config.retry.maxRetries}, maxWaitMs ${config.retry.maxWaitMs}, timeoutMs ${config.retry.timeoutMs}`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`keypool: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
