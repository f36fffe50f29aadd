#!/usr/bin/env node
// keypool's command line: serve, check, demo, fake-upstream. Parses arguments, loads config, wires
// the app and handles signals; everything else lives in the modules it calls.
import { parseArgs } from 'node:util';
import { loadConfigFile, type Config } from './config/load.js';
import { ConfigError } from './errors.js';

const USAGE = `Usage:
  keypool serve [--config FILE] [--port N] [--host H]   run the proxy (FILE defaults to $KEYPOOL_CONFIG)
  keypool check [--config FILE]                         validate a config and print the pool (masked)
  keypool demo [--requests N] [--concurrency N]         watch rotation against a built-in fake upstream
  keypool fake-upstream [--provider P] [--host H] [--port N] [--latency-ms N] [--rate-limit R/WINDOW_MS]
                        [--keys-json FILE] [--no-record]  run a fake upstream (openai, anthropic, gemini,
                                                          azure, openrouter) on its own
`;

/** Exit code for bad usage or a bad config. */
const EXIT_USAGE = 2;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serveCommand(rest);
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

async function serveCommand(args: string[]): Promise<number> {
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
  const { serve } = await import('./cli/serve.js');
  return serve({ config, warnings, port, host: values.host ?? config.server.host });
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
    // Exit now: open keep-alive sockets, timers or a reconnecting Redis client must not keep a stopped
    // keypool alive (logs are written synchronously by then).
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`keypool: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
