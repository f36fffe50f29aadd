// fast-check generators for hostile rate-limit header values: garbage, near-misses of every accepted
// format, numbers of every size (epoch seconds and ms, overflowing parts), dates far out, long strings.
import fc from 'fast-check';
import type { HeaderBag } from '../../src/keys/rate-limit-headers.js';

const digits = fc.stringMatching(/^\d{1,25}(\.\d{1,8})?$/);
const unit = fc.constantFrom('h', 'm', 's', 'ms', 'us', 'µs', 'ns', 'd', '');
const goDuration = fc
  .array(fc.tuple(digits, unit), { minLength: 1, maxLength: 5 })
  .map((parts) => parts.map(([d, u]) => d + u).join(''));
const anyDate = fc.date({ noInvalidDate: true, min: new Date(-8.64e15), max: new Date(8.64e15) });
const numberText = fc.oneof(
  fc.double().map(String),
  fc.integer().map(String),
  fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
  fc.integer({ min: 1e9, max: 4e9 }).map(String),
  fc.integer({ min: 1e12, max: 4e12 }).map(String),
);
const special = fc.constantFrom(
  '',
  ' ',
  'Infinity',
  '-Infinity',
  'NaN',
  '-0',
  '1e400s',
  '1e400',
  '999999999999999999999h',
  '99999999999s',
  '1' + '0'.repeat(400),
  '1.2345',
  '0x10',
  '\u0000',
  'Sat, 28 Nov 2026 12:00:30 GMT',
  '2026-11-28T12:00:05Z',
);

/** Any string a hostile or broken upstream could put in a header. */
export const hostileValue: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ minLength: 60, maxLength: 300, unit: fc.constantFrom('1', '0', 's', 'm', '.', ' ') }),
  digits,
  goDuration,
  numberText,
  anyDate.map((d) => d.toUTCString()),
  anyDate.map((d) => d.toISOString()),
  special,
);

const headerName = fc.constantFrom(
  'retry-after',
  'retry-after-ms',
  'x-ms-retry-after-ms',
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
  'anthropic-ratelimit-requests-limit',
  'anthropic-ratelimit-requests-remaining',
  'anthropic-ratelimit-requests-reset',
  'anthropic-ratelimit-tokens-limit',
  'anthropic-ratelimit-tokens-remaining',
  'anthropic-ratelimit-tokens-reset',
  'anthropic-ratelimit-input-tokens-reset',
  'anthropic-ratelimit-output-tokens-remaining',
);
const remainingValue = fc.oneof(fc.constant('0'), fc.nat().map(String), hostileValue);
const headerValue = fc.oneof(
  hostileValue,
  remainingValue,
  fc.array(hostileValue, { maxLength: 3 }),
  fc.constant(undefined),
);

/** A header bag of the names these parsers read, with hostile values, arrays and holes. */
export const hostileHeaders: fc.Arbitrary<HeaderBag> = fc.dictionary(headerName, headerValue, { maxKeys: 10 });

/** Whole epoch ms, from 1970 to far past today (a fake clock may start at 0). */
export const nowArb = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 4e12 }), fc.constant(Date.parse('2026-11-28T12:00:00Z')));

/** `cooldown.maxMs`: positive whole ms in the config; 0 and odd sizes as edges. */
export const maxMsArb = fc.oneof(fc.constantFrom(0, 1, 1000, 3_600_000), fc.integer({ min: 0, max: 1e10 }));
