// `keypool health`: GET /healthz of a running keypool, found where `serve` would listen with the same
// config and environment (so a container whose port was changed by KEYPOOL_PORT is still checked on the
// right one). Exit 0 when it answers 200, 1 otherwise: the image's HEALTHCHECK.
import { request } from 'undici';
import { failureCode } from '../health/http-sender.js';
import { EXIT_FAIL, EXIT_OK, EXIT_USAGE, UsageError, intFlag, parseFlags, type CliIo, type Command } from './command.js';
import { configPath } from './config-file.js';
import { serverAddress } from './server-address.js';

/** Below Docker's default healthcheck timeout (30 s) and the image's (3 s). */
export const DEFAULT_HEALTH_TIMEOUT_MS = 2_000;

const USAGE = `Usage: keypool health [options]

Asks a running keypool for GET /healthz. Exit 0 when it answers 200, 1 when it does not (or cannot be
reached), 2 when its address cannot be told. Without --url the address is server.host / server.port of
the config with $KEYPOOL_HOST / $KEYPOOL_PORT applied, as \`serve\` reads them (0.0.0.0 is checked on
127.0.0.1); only those fields need to be valid.

Options:
  -c, --config FILE     config file (default: $KEYPOOL_CONFIG; none: the defaults and the variables)
      --url URL         check this address instead, e.g. http://127.0.0.1:8787
      --timeout-ms N    time allowed for the answer (default ${DEFAULT_HEALTH_TIMEOUT_MS})
  -h, --help            show this help
`;

export const healthCommand: Command = {
  name: 'health',
  summary: 'exit 0 when a running keypool answers /healthz (the image HEALTHCHECK)',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const values = parseFlags(args, {
      config: { type: 'string', short: 'c' },
      url: { type: 'string' },
      'timeout-ms': { type: 'string' },
    });
    const timeoutMs = intFlag('--timeout-ms', values['timeout-ms'], 1, 600_000) ?? DEFAULT_HEALTH_TIMEOUT_MS;
    let base: string;
    if (values.url !== undefined) {
      base = origin(values.url);
    } else {
      const address = serverAddress(configPath(values.config, io.env), io.env);
      if (!address.ok) {
        io.err(`keypool health: cannot tell where keypool listens:\n${address.problems.map((p) => `  ${p}`).join('\n')}\n`);
        return EXIT_USAGE;
      }
      base = address.url;
    }
    const url = `${base}/healthz`;
    try {
      const res = await request(url, { signal: AbortSignal.timeout(timeoutMs) });
      const body = await res.body.text();
      if (res.statusCode === 200) {
        io.out(`ok ${url}\n`);
        return EXIT_OK;
      }
      io.err(`keypool health: ${url} answered ${res.statusCode} ${body.slice(0, 200)}\n`);
      return EXIT_FAIL;
    } catch (err) {
      io.err(`keypool health: ${url}: ${failureCode(err)}\n`);
      return EXIT_FAIL;
    }
  },
};

function origin(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.protocol === 'http:' || u.protocol === 'https:') return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
  } catch {
    // Said below.
  }
  throw new UsageError('--url: expected an address such as http://127.0.0.1:8787');
}
