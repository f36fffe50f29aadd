// `keypool check`: validates a config and prints the pool (names, masked secrets, fingerprints); with
// --probe, sends each key one cheap request and prints what the upstream thinks of it.
import { systemClock } from '../clock.js';
import type { Config } from '../config/load.js';
import type { ProbeOutcome } from '../health/classify.js';
import { createHttpSender } from '../health/http-sender.js';
import { probeAll, type KeyProbe, type KeyProbeResult } from '../health/probe-keys.js';
import type { Bucket } from '../keys/windows.js';
import { painter, useColour, type Paint } from './colour.js';
import { EXIT_FAIL, EXIT_OK, EXIT_USAGE, UsageError, intFlag, parseFlags, type CliIo, type Command } from './command.js';
import { configPath, loadOrExplain } from './config-file.js';
import { compactCount, formatDuration, renderTable } from './table.js';

/** Probes in flight at once unless --concurrency says otherwise. */
export const DEFAULT_PROBE_CONCURRENCY = 4;
const MAX_PROBE_CONCURRENCY = 64;

const USAGE = `Usage: keypool check [options]

Validates a config and prints the pool: key names, masked secrets, fingerprints. Exit 0 when valid,
2 with every problem named by its field.

Options:
  -c, --config FILE      config file (default: $KEYPOOL_CONFIG)
      --probe            also send each key one cheap request (upstreams[].probe, default GET /models)
                         and print ok / invalid / out of credit / rate-limited / model refused /
                         forbidden / error / unreachable, with the rate-limit headroom each key reports;
                         exit 1 when any key is not ok
      --model M          probe this model for each key (a JSON probe body gets it as "model", else
                         GET <baseUrl>/models/M): shows which keys may not use it
      --upstream NAME    probe only this upstream's keys
      --concurrency N    probes in flight at once (default ${DEFAULT_PROBE_CONCURRENCY})
      --timeout-ms N     time allowed per probe (default: health.probeTimeoutMs)
      --json             print the probe results as JSON (no secrets: names, fingerprints, masked)
  -h, --help             show this help
`;

export const checkCommand: Command = {
  name: 'check',
  summary: 'validate a config and print the pool; --probe tests every key',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const values = parseFlags(args, {
      config: { type: 'string', short: 'c' },
      probe: { type: 'boolean' },
      model: { type: 'string' },
      upstream: { type: 'string' },
      concurrency: { type: 'string' },
      'timeout-ms': { type: 'string' },
      json: { type: 'boolean' },
    });
    const probing = values.probe === true;
    for (const flag of ['model', 'upstream', 'concurrency', 'timeout-ms', 'json'] as const) {
      if (values[flag] !== undefined && !probing) throw new UsageError(`--${flag} goes with --probe`);
    }
    if (values.model?.trim() === '') throw new UsageError('--model: expected a model name');
    const concurrency = intFlag('--concurrency', values.concurrency, 1, MAX_PROBE_CONCURRENCY) ?? DEFAULT_PROBE_CONCURRENCY;
    const timeoutMs = intFlag('--timeout-ms', values['timeout-ms'], 1, 3_600_000);
    const file = configPath(values.config, io.env);
    const loaded = loadOrExplain(file, io);
    if (!loaded) return EXIT_USAGE;
    const { config, warnings } = loaded;
    const upstreams = values.upstream === undefined ? config.upstreams : config.upstreams.filter((u) => u.name === values.upstream);
    if (upstreams.length === 0) throw new UsageError(`--upstream: no upstream of that name (${config.upstreams.map((u) => u.name).join(', ')})`);

    if (values.json !== true) io.out(`${describeConfig(config, file ?? '', warnings).join('\n')}\n`);
    if (!probing) return EXIT_OK;

    const targets: KeyProbe[] = upstreams.flatMap((upstream) => upstream.keys.map((key) => ({ upstream, key, model: values.model })));
    const sender = createHttpSender({ clock: systemClock, timeoutMs: timeoutMs ?? config.health.probeTimeoutMs });
    let results: KeyProbeResult[];
    try {
      if (values.json !== true) {
        const what = values.model === undefined ? 'its probe' : `model ${values.model}`;
        io.err(`probing ${targets.length} key(s) with ${what}, ${concurrency} at a time, ${formatDuration(timeoutMs ?? config.health.probeTimeoutMs)} each\n`);
      }
      results = await probeAll(targets, { send: sender.send, concurrency, now: () => Date.now(), maxMs: config.cooldown.maxMs });
    } finally {
      await sender.close();
    }
    const bad = results.filter((r) => r.outcome.kind !== 'ok').length;
    if (values.json === true) {
      io.out(`${JSON.stringify({ keys: results.map(resultJson), ok: results.length - bad, notOk: bad }, null, 2)}\n`);
    } else {
      const paint = painter(useColour(io.isTTY, io.env));
      io.out(`\n${probeTable(results, Date.now(), paint).join('\n')}\n`);
      io.out(bad === 0 ? `${paint('green', `all ${results.length} key(s) ok`)}\n` : `${paint('red', `${bad} of ${results.length} key(s) not ok`)}\n`);
    }
    return bad === 0 ? EXIT_OK : EXIT_FAIL;
  },
};

function describeConfig(config: Config, file: string, warnings: readonly string[]): string[] {
  const lines = [`config ${file} is valid`];
  for (const w of warnings) lines.push(`warning: ${w}`);
  lines.push(`listen ${config.server.host}:${config.server.port}`);
  for (const u of config.upstreams) {
    lines.push(`upstream ${u.name}: ${u.prefix} -> ${u.origin}${u.basePath} (${u.keys.length} key(s), header ${u.authHeader}, probe ${u.probe.method} ${u.probe.path})`);
    for (const k of u.keys) lines.push(`  ${k.name.padEnd(16)} ${k.masked().padEnd(12)} fp:${k.fingerprint}`);
  }
  lines.push(`retry: maxRetries ${config.retry.maxRetries}, maxWaitMs ${config.retry.maxWaitMs}, timeoutMs ${config.retry.timeoutMs}`);
  if (config.health.probeIntervalMs > 0) lines.push(`health: refused keys re-probed every ${formatDuration(config.health.probeIntervalMs)}`);
  return lines;
}

/** How each outcome reads in the table, and its colour. */
const LABEL: Readonly<Record<ProbeOutcome['kind'], readonly [string, 'green' | 'red' | 'yellow' | 'magenta']>> = {
  ok: ['ok', 'green'],
  invalid: ['invalid', 'red'],
  out_of_credit: ['out of credit', 'red'],
  rate_limited: ['rate-limited', 'yellow'],
  model_refused: ['model refused', 'magenta'],
  forbidden: ['forbidden', 'red'],
  error: ['error', 'red'],
  unreachable: ['unreachable', 'red'],
};

export function probeTable(results: readonly KeyProbeResult[], now: number, paint: Paint): string[] {
  const rows = results.map((r) => {
    const o = r.outcome;
    const [label, style] = LABEL[o.kind];
    const answered = o.kind === 'unreachable' ? undefined : o;
    return [
      r.target.upstream.name,
      r.target.key.name,
      r.target.key.masked(),
      paint(style, label),
      answered === undefined ? '-' : String(answered.status),
      bucket(answered?.headroom?.requests, now),
      bucket(answered?.headroom?.tokens, now),
      detail(o),
    ];
  });
  return renderTable(
    [
      { title: 'UPSTREAM' },
      { title: 'KEY' },
      { title: 'SECRET' },
      { title: 'RESULT' },
      { title: 'HTTP', align: 'right' },
      { title: 'REQUESTS LEFT', align: 'right' },
      { title: 'TOKENS LEFT', align: 'right' },
      { title: 'DETAIL' },
    ],
    rows,
  );
}

function bucket(b: Omit<Bucket, 'base'> | undefined, now: number): string {
  if (b === undefined) return '';
  return `${compactCount(b.remaining)}/${compactCount(b.limit)} (${formatDuration(Math.max(0, b.resetAt - now))})`;
}

function detail(o: ProbeOutcome): string {
  switch (o.kind) {
    case 'unreachable':
      return o.reason;
    case 'rate_limited':
      return [o.code, o.retryInMs === undefined ? undefined : `retry in ${formatDuration(o.retryInMs)}`].filter(Boolean).join(', ');
    case 'model_refused':
      return [o.model, o.code].filter(Boolean).join(': ');
    default:
      return o.code ?? '';
  }
}

function resultJson(r: KeyProbeResult): Record<string, unknown> {
  const { key, upstream } = r.target;
  const o = r.outcome;
  const row: Record<string, unknown> = {
    upstream: upstream.name,
    key: key.name,
    fingerprint: key.fingerprint,
    masked: key.masked(),
    probe: `${r.method} ${r.path}`,
    result: o.kind,
  };
  if (o.kind === 'unreachable') return { ...row, reason: o.reason };
  const iso = (b: Omit<Bucket, 'base'> | undefined) => (b === undefined ? null : { limit: b.limit, remaining: b.remaining, resetAt: new Date(b.resetAt).toISOString() });
  return {
    ...row,
    status: o.status,
    code: o.code ?? null,
    ...(o.kind === 'rate_limited' ? { retryInMs: o.retryInMs ?? null } : {}),
    ...(o.kind === 'model_refused' ? { model: o.model } : {}),
    headroom: o.headroom === undefined ? null : { requests: iso(o.headroom.requests), tokens: iso(o.headroom.tokens) },
  };
}
