// `keypool serve`: its flags, which config and log format they choose, then serve.ts runs the proxy.
import { lookup } from '../config/environment.js';
import { painter, useColour } from './colour.js';
import { EXIT_USAGE, UsageError, intFlag, parseFlags, type CliIo, type Command } from './command.js';
import { configPath, loadOrExplain } from './config-file.js';

const USAGE = `Usage: keypool serve [options]

Runs the proxy until SIGTERM or SIGINT. SIGHUP, or saving the config file, reloads the config.

Options:
  -c, --config FILE          config file (default: $KEYPOOL_CONFIG)
      --default-config FILE  config used when neither --config nor $KEYPOOL_CONFIG is given
                             (npm start passes proxy.example.yaml)
  -p, --port N               listen port; beats $KEYPOOL_PORT and server.port
      --host H               listen address; beats $KEYPOOL_HOST and server.host
      --pretty               human-readable log lines instead of JSON (also LOG_FORMAT=pretty)
  -h, --help                 show this help

Environment: KEYPOOL_CONFIG, KEYPOOL_HOST, KEYPOOL_PORT, KEYPOOL_STATE_FILE, LOG_FORMAT (json | pretty),
NO_COLOR. Precedence: flag > environment > config file.
`;

export const serveCommand: Command = {
  name: 'serve',
  summary: 'run the proxy',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const values = parseFlags(args, {
      config: { type: 'string', short: 'c' },
      'default-config': { type: 'string' },
      port: { type: 'string', short: 'p' },
      host: { type: 'string' },
      pretty: { type: 'boolean' },
    });
    const pretty = values.pretty === true || logFormat(io) === 'pretty';
    const port = intFlag('--port', values.port, 0, 65_535);
    if (values.host !== undefined && values.host.trim() === '') throw new UsageError('--host: expected an address');
    const file = configPath(values.config, io.env, values['default-config']);
    const loaded = loadOrExplain(file, io);
    if (!loaded || file === undefined) return EXIT_USAGE;
    const { config, warnings, files } = loaded;
    const { serve } = await import('./serve.js');
    const paint = pretty ? painter(useColour(io.isTTY, io.env)) : undefined;
    return serve({ config, warnings, file, files, port: port ?? config.server.port, host: values.host ?? config.server.host, pretty: paint });
  },
};

/** LOG_FORMAT: json (the default) or pretty; anything else is a mistake worth saying. */
function logFormat(io: CliIo): 'json' | 'pretty' {
  const v = lookup(io.env, 'LOG_FORMAT')?.trim().toLowerCase();
  if (v === undefined || v === '' || v === 'json') return 'json';
  if (v === 'pretty') return 'pretty';
  throw new UsageError('LOG_FORMAT: expected json or pretty');
}
