// `keypool fake-upstream`: runs the fake upstream as its own process (the benchmark's upstream),
// prints one `listening <url>` line for whoever spawned it, and closes on SIGINT/SIGTERM.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseBehavior } from './behavior-schema.js';
import { PROVIDERS, type Behavior, type FakeUpstreamOptions, type Provider } from './behaviors.js';
import { startFakeUpstream } from './server.js';

/** Seams for tests; the command line uses the process's own. */
export interface FakeUpstreamCliIo {
  /** Receives the `listening <url>` line. @default writes to process.stdout */
  print?: (line: string) => void;
  /** Aborting it shuts the server down like a signal. @default none (only SIGINT/SIGTERM) */
  signal?: AbortSignal;
}

const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

/** Resolves once the server has closed after a signal; rejects on bad arguments or a failed listen. */
export async function runFakeUpstreamCli(argv: string[], io: FakeUpstreamCliIo = {}): Promise<void> {
  const options = await parseFakeUpstreamArgs(argv);
  const upstream = await startFakeUpstream(options);
  const print = io.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  print(`listening ${upstream.url}`);

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      for (const name of SHUTDOWN_SIGNALS) process.off(name, stop);
      io.signal?.removeEventListener('abort', stop);
      // A close error has nobody to report to: the process is on its way out either way.
      upstream.close().then(resolve, resolve);
    };
    for (const name of SHUTDOWN_SIGNALS) process.once(name, stop);
    if (io.signal?.aborted === true) stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
}

/** The flags as server options; throws an Error naming the bad flag (never a key from --keys-json). */
export async function parseFakeUpstreamArgs(argv: string[]): Promise<FakeUpstreamOptions> {
  const { values } = parseArgs({
    args: argv,
    options: {
      provider: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'latency-ms': { type: 'string' },
      'rate-limit': { type: 'string' },
      'keys-json': { type: 'string' },
      'no-record': { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  const options: FakeUpstreamOptions = { record: values['no-record'] !== true };
  if (values.provider !== undefined) options.provider = providerFlag(values.provider);
  if (values.host !== undefined) options.host = values.host;
  if (values.port !== undefined) options.port = integerFlag('--port', values.port, 0, 65_535);
  if (values['latency-ms'] !== undefined) {
    options.latencyMs = integerFlag('--latency-ms', values['latency-ms'], 0, Number.MAX_SAFE_INTEGER);
  }
  if (values['rate-limit'] !== undefined) options.rateLimit = rateLimitFlag(values['rate-limit']);
  if (values['keys-json'] !== undefined) options.keys = await readKeysJson(values['keys-json']);
  return options;
}

function providerFlag(raw: string): Provider {
  const known = PROVIDERS.find((provider) => provider === raw);
  if (known === undefined) throw new Error(`--provider: expected one of ${PROVIDERS.join(', ')}, got ${JSON.stringify(raw)}`);
  return known;
}

function integerFlag(flag: string, raw: string, min: number, max: number): number {
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(`${flag}: expected an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** `R/WINDOW_MS`, e.g. `5/1000`: R requests per key per window. */
function rateLimitFlag(raw: string): { requests: number; windowMs: number } {
  const match = /^(\d+)\/(\d+)$/.exec(raw);
  const requests = Number(match?.[1]);
  const windowMs = Number(match?.[2]);
  if (!Number.isSafeInteger(requests) || !Number.isSafeInteger(windowMs) || windowMs < 1) {
    throw new Error(`--rate-limit: expected REQUESTS/WINDOW_MS such as 5/1000, got ${JSON.stringify(raw)}`);
  }
  return { requests, windowMs };
}

/** A JSON object secret -> Behavior. Errors name entries by position: the names are secrets. */
async function readKeysJson(file: string): Promise<Record<string, Behavior>> {
  const text = await readFile(file, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // V8's message quotes the text around the error, which may be a key.
    throw new Error(`--keys-json ${file}: not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`--keys-json ${file}: expected an object mapping each key to a behaviour`);
  }
  // fromEntries defines own properties, so a key spelled `__proto__` stays a key.
  return Object.fromEntries(
    Object.entries(parsed).map(([key, value], index) => [
      key,
      parseBehavior(value, `--keys-json ${file} entry #${index + 1}`),
    ]),
  );
}
