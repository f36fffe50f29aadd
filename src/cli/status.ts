// `keypool status`: asks a running keypool for GET /admin/keys and prints the key table (status-view.ts),
// or the JSON itself with --json. Says plainly when keypool is not there or refuses the admin token.
import { request } from 'undici';
import { lookup } from '../config/environment.js';
import { failureCode } from '../health/http-sender.js';
import { painter, useColour } from './colour.js';
import { EXIT_FAIL, EXIT_OK, EXIT_USAGE, UsageError, intFlag, parseFlags, type CliIo, type Command } from './command.js';
import { configPath } from './config-file.js';
import { serverAddress } from './server-address.js';
import { keysDocumentSchema, renderStatus } from './status-view.js';

/** Time allowed for the admin API's answer unless --timeout-ms says otherwise. */
export const DEFAULT_STATUS_TIMEOUT_MS = 5_000;
/** Largest answer read: a pool of thousands of keys fits many times over. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

const USAGE = `Usage: keypool status [options]

Prints the key table of a running keypool (GET /admin/keys): per key its state, why and for how long,
requests in flight, requests, 429s, tokens and the rate-limit headroom last reported.

Options:
      --url URL          keypool's address (default: server.host and server.port of the config,
                         with $KEYPOOL_HOST / $KEYPOOL_PORT, as \`serve\` reads them)
  -c, --config FILE      config to take the address and admin.token from (default: $KEYPOOL_CONFIG)
      --token T          admin token (default: $KEYPOOL_ADMIN_TOKEN, then admin.token of the config)
      --json             print the JSON answer as it is
      --timeout-ms N     time allowed for the answer (default ${DEFAULT_STATUS_TIMEOUT_MS})
  -h, --help             show this help

Colour only on a terminal, and never with NO_COLOR set. Exit 1 when keypool cannot be reached or
refuses the token.
`;

export const statusCommand: Command = {
  name: 'status',
  summary: 'print the key table of a running keypool',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const values = parseFlags(args, {
      url: { type: 'string' },
      config: { type: 'string', short: 'c' },
      token: { type: 'string' },
      json: { type: 'boolean' },
      'timeout-ms': { type: 'string' },
    });
    const timeoutMs = intFlag('--timeout-ms', values['timeout-ms'], 1, 600_000) ?? DEFAULT_STATUS_TIMEOUT_MS;
    let base = values.url === undefined ? undefined : baseUrl(values.url);
    let configToken: string | undefined;
    // The config gives the address, unless --url does, and the admin token either way when it is named.
    if (base === undefined || values.config !== undefined) {
      const address = serverAddress(configPath(values.config, io.env), io.env);
      if (!address.ok) {
        io.err(`keypool status: cannot read the config:\n${address.problems.map((p) => `  ${p}`).join('\n')}\n(pass --url to give keypool's address)\n`);
        return EXIT_USAGE;
      }
      base ??= address.url;
      configToken = address.adminToken;
    }
    const token = nonEmpty(values.token) ?? nonEmpty(lookup(io.env, 'KEYPOOL_ADMIN_TOKEN')) ?? configToken;
    const url = `${base}/admin/keys`;

    let status: number;
    let body: string;
    try {
      const res = await request(url, {
        headers: { accept: 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = res.statusCode;
      body = await readCapped(res.body);
    } catch (err) {
      io.err(`keypool status: cannot reach keypool at ${base} (${failureCode(err)}); is it running? Pass --url, or --config for its address\n`);
      return EXIT_FAIL;
    }
    if (status === 401 || status === 403) {
      io.err(
        token === undefined
          ? `keypool status: ${url} needs an admin token (${status}): pass --token or set KEYPOOL_ADMIN_TOKEN\n`
          : `keypool status: ${url} refused the admin token (${status}): check --token / KEYPOOL_ADMIN_TOKEN against admin.token\n`,
      );
      return EXIT_FAIL;
    }
    if (status === 404) {
      io.err(`keypool status: ${url} not found (404): is this keypool, and a version with the admin API?\n`);
      return EXIT_FAIL;
    }
    if (status !== 200) {
      io.err(`keypool status: ${url} answered ${status}\n`);
      return EXIT_FAIL;
    }
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      io.err(`keypool status: ${url} did not answer JSON\n`);
      return EXIT_FAIL;
    }
    const doc = keysDocumentSchema.safeParse(json);
    if (!doc.success) {
      io.err(`keypool status: ${url} answered JSON that is not a key table\n`);
      return EXIT_FAIL;
    }
    if (values.json === true) {
      io.out(`${JSON.stringify(json, null, 2)}\n`);
      return EXIT_OK;
    }
    const paint = painter(useColour(io.isTTY, io.env));
    io.out(`${renderStatus(doc.data, paint).join('\n')}\n`);
    return EXIT_OK;
  },
};

function baseUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError('--url: expected an address such as http://127.0.0.1:8787');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError('--url: expected an http:// or https:// address');
  if (u.username !== '' || u.password !== '') throw new UsageError('--url: put the token in --token, not in the address');
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t === undefined || t === '' ? undefined : t;
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) {
      body.destroy();
      throw Object.assign(new Error('answer too large'), { code: 'ANSWER_TOO_LARGE' });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
