// `keypool serve --pretty` / LOG_FORMAT=pretty: pino's JSON lines rewritten for a person reading a
// terminal: time, level, message, then the fields as key=value, the per-request line in a short form.
// It formats what pino already wrote (redaction applied, keys logged by name), so it shows nothing the
// JSON line would not; it adds no dependency (pino-pretty would pull in a dozen).
import { pino, type DestinationStream } from 'pino';
import type { Paint, Style } from './colour.js';

/** pino's numeric levels (https://getpino.io/#/docs/api?id=loggerlevels). */
const LEVELS: Readonly<Record<number, readonly [string, Style]>> = {
  10: ['TRACE', 'dim'],
  20: ['DEBUG', 'blue'],
  30: ['INFO ', 'green'],
  40: ['WARN ', 'yellow'],
  50: ['ERROR', 'red'],
  60: ['FATAL', 'magenta'],
};

/** Fields every line has, shown in the head of the line or not at all. */
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'v']);

/** The request line's fields that its short form shows in place. */
const REQUEST_HEAD = new Set(['method', 'path', 'status', 'key', 'ms']);

/** One JSON log line as one (or, for an error's stack, a few) readable line(s), without the newline. */
export function formatLogLine(line: string, paint: Paint): string {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return line.replace(/\n$/, '');
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return line.replace(/\n$/, '');
  const e = entry as Record<string, unknown>;
  const [label, style] = LEVELS[typeof e['level'] === 'number' ? e['level'] : 30] ?? ['?    ', 'bold'];
  const head = `${paint('dim', clockTime(e['time']))} ${paint(style, label)}`;
  const msg = typeof e['msg'] === 'string' ? e['msg'] : '';
  const parts: string[] = [];
  let stack: string | undefined;

  if (msg === 'request' && typeof e['method'] === 'string') {
    const status = typeof e['status'] === 'number' ? e['status'] : 0;
    const statusStyle: Style = status >= 500 ? 'red' : status >= 400 ? 'yellow' : 'green';
    parts.push(`${e['method']} ${String(e['path'] ?? '')}`, paint(statusStyle, String(status)));
    if (typeof e['key'] === 'string') parts.push(`via ${paint('cyan', e['key'])}`);
    if (typeof e['ms'] === 'number') parts.push(`${e['ms']}ms`);
  } else {
    parts.push(paint('bold', msg));
  }
  for (const [name, value] of Object.entries(e)) {
    if (HEAD_FIELDS.has(name) || value === undefined || value === null) continue;
    if (msg === 'request' && REQUEST_HEAD.has(name)) continue;
    if (name === 'err' && typeof value === 'object' && !Array.isArray(value)) {
      const err = value as Record<string, unknown>;
      parts.push(`${paint('dim', 'err=')}${show(err['message'] ?? err['type'] ?? '')}`);
      if (typeof err['stack'] === 'string' && typeof e['level'] === 'number' && e['level'] >= 50) stack = err['stack'];
      continue;
    }
    parts.push(`${paint('dim', `${name}=`)}${show(value)}`);
  }
  const text = `${head} ${parts.join(' ')}`;
  return stack === undefined ? text : `${text}\n${paint('dim', indent(stack))}`;
}

/**
 * A pino destination that writes each line pretty to `write` (default: stdout through pino's own
 * synchronous destination, so a line is out before the process exits and `logger.flush()` works).
 */
export function prettyDestination(paint: Paint, write?: (text: string) => void): DestinationStream & { flush(cb?: () => void): void } {
  const sink = write === undefined ? pino.destination({ dest: 1, sync: true }) : undefined;
  const out = write ?? ((text: string) => void sink?.write(text));
  return {
    write(line: string): void {
      // pino writes one JSON document per call, newline-terminated.
      for (const one of line.split('\n')) if (one !== '') out(`${formatLogLine(one, paint)}\n`);
    },
    flush(cb?: () => void): void {
      if (sink !== undefined) sink.flush(cb);
      else cb?.();
    },
  };
}

function clockTime(time: unknown): string {
  if (typeof time !== 'number' || !Number.isFinite(time)) return '--:--:--.---';
  const d = new Date(time);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function show(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && /^[^\s",]+$/.test(v))) return value.join(',');
  return JSON.stringify(value);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}
