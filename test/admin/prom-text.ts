// A strict parser for the Prometheus text exposition format (version 0.0.4), written from the format's
// spec (prometheus.io/docs/instrumenting/exposition_formats): HELP/TYPE lines, samples with escaped
// label values, Go float values (NaN, +Inf, -Inf), optional timestamps. Strict where the spec is: a
// family's lines form one group with HELP/TYPE first, TYPE at most once and before any sample, no
// series twice, label names valid and not reserved; histograms have cumulative buckets ending in
// +Inf = _count. Anything else throws PromParseError naming the line.

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestamp: number | undefined;
}

export interface PromFamily {
  readonly name: string;
  help: string | undefined;
  type: MetricType;
  readonly samples: PromSample[];
}

export class PromParseError extends Error {
  override readonly name = 'PromParseError';
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const FLOAT = /^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)$/;
const INT = /^-?\d+$/;

export function parseFloatGo(text: string): number | undefined {
  if (text === 'NaN') return NaN;
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return FLOAT.test(text) ? Number(text) : undefined;
}

function unescapeHelp(s: string, line: number): string {
  return s.replace(/\\(.?)/g, (_m, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    throw new PromParseError(`line ${line}: bad escape in HELP`);
  });
}

/** Label set `{a="x",b="y"}` starting at `s[0] === '{'`; returns the labels and what follows. */
function parseLabels(s: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  const fail = (why: string): never => {
    throw new PromParseError(`line ${line}: ${why}`);
  };
  for (;;) {
    if (s[i] === '}') return { labels, rest: s.slice(i + 1) };
    const m = LABEL_NAME.exec(s.slice(i));
    if (m === null) fail('label name expected');
    const name = m![0];
    if (name.startsWith('__')) fail(`reserved label name ${name}`);
    if (Object.hasOwn(labels, name)) fail(`label ${name} twice`);
    i += name.length;
    if (s[i] !== '=' || s[i + 1] !== '"') fail('="value" expected after a label name');
    i += 2;
    let value = '';
    for (;;) {
      const c = s[i];
      if (c === undefined) fail('unterminated label value');
      if (c === '"') break;
      if (c === '\\') {
        const e = s[i + 1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else fail('bad escape in a label value');
        i += 2;
      } else {
        value += c;
        i++;
      }
    }
    labels[name] = value;
    i++;
    if (s[i] === ',') i++;
    else if (s[i] !== '}') fail('"," or "}" expected after a label value');
  }
}

function familyOf(name: string, families: ReadonlyMap<string, PromFamily>): string {
  if (families.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const f = families.get(base);
    if (f?.type === 'histogram' || (f?.type === 'summary' && suffix !== '_bucket')) return base;
  }
  return name;
}

export function parsePromText(text: string): Map<string, PromFamily> {
  if (text !== '' && !text.endsWith('\n')) throw new PromParseError('the last line must end with a newline');
  const families = new Map<string, PromFamily>();
  const done = new Set<string>();
  const series = new Set<string>();
  const typed = new Set<string>();
  let current: string | undefined;
  const enter = (name: string, line: number): PromFamily => {
    if (current !== name) {
      if (done.has(name)) throw new PromParseError(`line ${line}: lines of ${name} are not one group`);
      if (current !== undefined) done.add(current);
      current = name;
    }
    let f = families.get(name);
    if (f === undefined) {
      f = { name, help: undefined, type: 'untyped', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+([^ \t]+)(?:[ \t]+(.*))?$/.exec(raw);
      if (m === null) return; // a comment
      const [, kind, name = '', rest = ''] = m;
      if (METRIC_NAME.exec(name)?.[0] !== name) throw new PromParseError(`line ${line}: bad metric name in ${kind}`);
      const f = enter(name, line);
      if (kind === 'HELP') {
        if (f.help !== undefined) throw new PromParseError(`line ${line}: HELP for ${name} twice`);
        f.help = unescapeHelp(rest, line);
      } else {
        if (f.samples.length > 0) throw new PromParseError(`line ${line}: TYPE for ${name} after its samples`);
        if (typed.has(name)) throw new PromParseError(`line ${line}: TYPE for ${name} twice`);
        if (!TYPES.has(rest.trim() as MetricType)) throw new PromParseError(`line ${line}: unknown type ${rest}`);
        f.type = rest.trim() as MetricType;
        typed.add(name);
      }
      return;
    }
    const nm = METRIC_NAME.exec(raw);
    if (nm === null) throw new PromParseError(`line ${line}: metric name expected`);
    const name = nm[0];
    let rest = raw.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest, line));
    const fields = rest.trim().split(/[ \t]+/);
    if (!/^[ \t]/.test(rest) || fields.length < 1 || fields.length > 2) throw new PromParseError(`line ${line}: "value [timestamp]" expected`);
    const value = parseFloatGo(fields[0] ?? '');
    if (value === undefined) throw new PromParseError(`line ${line}: bad value ${fields[0]}`);
    let timestamp: number | undefined;
    if (fields[1] !== undefined) {
      if (!INT.test(fields[1])) throw new PromParseError(`line ${line}: bad timestamp`);
      timestamp = Number(fields[1]);
    }
    const f = enter(familyOf(name, families), line);
    const id = `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(',')}}`;
    if (series.has(id)) throw new PromParseError(`line ${line}: series ${id} twice`);
    series.add(id);
    if (f.type === 'counter' && !(value >= 0)) throw new PromParseError(`line ${line}: counter ${name} is ${value}`);
    f.samples.push({ name, labels, value, timestamp });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

/** Buckets per label set (less `le`): cumulative, +Inf present and equal to _count, _sum present. */
function checkHistogram(f: PromFamily): void {
  const groups = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name === `${f.name}_bucket`) {
      const bound = le === undefined ? undefined : parseFloatGo(le);
      if (bound === undefined || Number.isNaN(bound)) throw new PromParseError(`${f.name}: bucket without a valid le`);
      g.buckets.push([bound, s.value]);
    } else if (s.name === `${f.name}_count`) g.count = s.value;
    else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else throw new PromParseError(`${f.name}: histogram sample ${s.name}`);
  }
  for (const [key, g] of groups) {
    const sorted = [...g.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]![1] < sorted[i - 1]![1]) throw new PromParseError(`${f.name}${key}: buckets not cumulative`);
    }
    const inf = sorted.at(-1);
    if (inf === undefined || inf[0] !== Infinity) throw new PromParseError(`${f.name}${key}: no +Inf bucket`);
    if (g.count === undefined || g.sum === undefined) throw new PromParseError(`${f.name}${key}: _count or _sum missing`);
    if (inf[1] !== g.count) throw new PromParseError(`${f.name}${key}: +Inf bucket ${inf[1]} != _count ${g.count}`);
  }
}

/** The one sample of `family` whose labels include `labels` (throws unless exactly one matches). */
export function sample(families: ReadonlyMap<string, PromFamily>, family: string, labels: Record<string, string>, name = family): number {
  const f = families.get(family);
  if (f === undefined) throw new Error(`no family ${family}`);
  const hits = f.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length !== 1) throw new Error(`${hits.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return hits[0]!.value;
}
