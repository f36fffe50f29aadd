// The test-side Prometheus text parser is itself held to the format: the spec's own example parses,
// every strictness rule rejects what it should, and any families written by a reference writer parse
// back to themselves (fast-check).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePromText, PromParseError, sample } from './prom-text.js';

// The example of prometheus.io/docs/instrumenting/exposition_formats (text format), less its comment lines.
const SPEC_EXAMPLE = `# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
`;

describe('Prometheus text parser', () => {
  it('reads the exposition format spec’s example', () => {
    const f = parsePromText(SPEC_EXAMPLE);
    expect(f.get('http_requests_total')).toMatchObject({ type: 'counter', help: 'The total number of HTTP requests.' });
    expect(sample(f, 'http_requests_total', { code: '400' })).toBe(3);
    expect(f.get('http_requests_total')!.samples[0]!.timestamp).toBe(1395066363000);
    expect(f.get('msdos_file_access_time_seconds')!.samples[0]!.labels).toEqual({ path: 'C:\\DIR\\FILE.TXT', error: 'Cannot find file:\n"FILE.TXT"' });
    expect(sample(f, 'something_weird', {})).toBe(Infinity);
    expect(sample(f, 'http_request_duration_seconds', { le: '+Inf' }, 'http_request_duration_seconds_bucket')).toBe(144320);
    expect(f.get('http_request_duration_seconds')!.type).toBe('histogram');
  });

  const bad: [string, string][] = [
    ['no final newline', 'a 1'],
    ['TYPE after samples', 'a 1\n# TYPE a gauge\n'],
    ['TYPE twice', '# TYPE a gauge\n# TYPE a gauge\na 1\n'],
    ['unknown type', '# TYPE a thing\n'],
    ['a family split in two groups', 'a 1\nb 1\na{x="1"} 2\n'],
    ['a series twice', 'a{x="1"} 1\na{x="1"} 2\n'],
    ['a bad value', 'a one\n'],
    ['a bad escape', 'a{x="\\t"} 1\n'],
    ['an unterminated label value', 'a{x="1} 1\n'],
    ['a reserved label name', 'a{__name__="x"} 1\n'],
    ['a label twice', 'a{x="1",x="2"} 1\n'],
    ['no space before the value', 'a{x="1"}1\n'],
    ['a negative counter', '# TYPE a counter\na -1\n'],
    ['a histogram without +Inf', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    ['a histogram whose buckets fall', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ['+Inf not _count', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'],
    ['a histogram without _sum', '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n'],
  ];
  for (const [name, text] of bad) {
    it(`rejects ${name}`, () => {
      expect(() => parsePromText(text)).toThrow(PromParseError);
    });
  }

  it('never fails with anything but a PromParseError', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', '_', '{', '}', '=', '"', '\\', 'n', ',', ' ', '\n', '#', '1', '.', 'e', '+', '-', 'I', 'T', 'Y', 'P', 'E') }), (text) => {
        try {
          parsePromText(text);
        } catch (err) {
          expect(err).toBeInstanceOf(PromParseError);
        }
      }),
    );
  });

  const name = fc.stringMatching(/^[a-z_][a-z0-9_]{0,10}$/);
  const labelValue = fc.string({ unit: fc.constantFrom('a', 'Z', ' ', '"', '\\', '\n', 'é', '{', '}', ',', '=') });
  const value = fc.oneof(fc.integer({ min: 0, max: 1e9 }), fc.double({ min: 0, max: 1e12, noNaN: true }), fc.constant(Infinity));
  const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  const fmt = (v: number) => (v === Infinity ? '+Inf' : String(v));

  it('reads back any families a reference writer produces', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { minLength: 1, maxLength: 4 }),
        fc.array(fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_]{0,6}$/), labelValue, { maxKeys: 3 }), { minLength: 1, maxLength: 4 }),
        fc.array(value, { minLength: 16, maxLength: 16 }),
        (names, labelSets, values) => {
          let text = '';
          const expected: { family: string; labels: Record<string, string>; value: number }[] = [];
          names.forEach((n, i) => {
            text += `# HELP ${n} help for ${n}\n# TYPE ${n} ${i % 2 === 0 ? 'counter' : 'gauge'}\n`;
            const seen = new Set<string>();
            labelSets.forEach((labels, j) => {
              const id = JSON.stringify(Object.entries(labels).sort());
              if (seen.has(id)) return;
              seen.add(id);
              const v = values[(i * 4 + j) % values.length]!;
              const body = Object.entries(labels).map(([k, lv]) => `${k}="${escapeLabel(lv)}"`).join(',');
              text += `${n}${body === '' ? '' : `{${body}}`} ${fmt(v)}\n`;
              expected.push({ family: n, labels, value: v });
            });
          });
          const parsed = parsePromText(text);
          for (const e of expected) {
            const hits = parsed.get(e.family)!.samples.filter((x) => JSON.stringify(Object.entries(x.labels).sort()) === JSON.stringify(Object.entries(e.labels).sort()));
            expect(hits.map((h) => h.value)).toEqual([e.value]);
          }
          expect([...parsed.keys()].sort()).toEqual([...names].sort());
        },
      ),
    );
  });
});
