// Reads a few top-level fields of a JSON object without parsing the rest: nested values are skipped by a
// depth counter over the bytes (no recursion, no allocation), long strings jumped over natively. Work is
// one linear pass at most, and a 2,000,000-deep `[[[...` is given up after MAX_NESTING bytes. Pure; never
// throws.

/** The value read for a field whose value is an object or an array (what it holds is not read). */
export const NESTED: object = Object.freeze({});
/**
 * Top-level fields scanned before giving up: real request bodies have a few dozen; a body of a million
 * tiny fields would cost time for nothing.
 */
export const MAX_TOP_LEVEL_FIELDS = 1000;
/**
 * Nesting a skipped value may have (serde_json's default recursion limit); deeper, the body is not read.
 * Real bodies (tool schemas included) stay far below; a hostile `[[[...` then costs this many bytes.
 */
export const MAX_NESTING = 128;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

/**
 * The values of `fields` in the top-level object of `body` (the last one where a name repeats, as
 * JSON.parse does). Strings, numbers, booleans and null are read as JSON.parse reads them; objects and
 * arrays as NESTED. `undefined` when the body is not a JSON object, nests deeper than MAX_NESTING, has
 * more than MAX_TOP_LEVEL_FIELDS fields, or is malformed where this reads: its top-level structure, the
 * names, the values of `fields`. What is skipped (nested values, other
 * fields' values) is only delimited, not validated: a body malformed only there may still yield fields.
 */
export function readTopLevel(body: Uint8Array, fields: readonly string[]): ReadonlyMap<string, unknown> | undefined {
  const found = new Map<string, unknown>();
  const ok = scanTopLevel(body, fields, (field, start, end) => {
    const value = readValue(body, start, end);
    if (value === INVALID) return false;
    found.set(field, value);
    return true;
  });
  return ok ? found : undefined;
}

/**
 * Where every value of a top-level field sits in `body`, in order (a name may repeat, and parsers differ
 * on which one wins): for rewriting them all. undefined when the body is not read; [] when absent.
 */
export function topLevelRanges(body: Uint8Array, field: string): { start: number; end: number }[] | undefined {
  const ranges: { start: number; end: number }[] = [];
  const ok = scanTopLevel(body, [field], (_f, start, end) => {
    ranges.push({ start, end });
    return true;
  });
  return ok ? ranges : undefined;
}

/** One pass over the top-level object, calling `onValue` with each wanted field's value range; false when unreadable. */
function scanTopLevel(body: Uint8Array, fields: readonly string[], onValue: (field: string, start: number, end: number) => boolean): boolean {
  const wanted = fields.map((f) => Buffer.from(f, 'utf8'));
  let i = skipWs(body, 0);
  if (body[i] !== LBRACE) return false;
  i = skipWs(body, i + 1);
  if (body[i] === RBRACE) return atEnd(body, i + 1);
  for (let count = 0; count < MAX_TOP_LEVEL_FIELDS; count++) {
    if (body[i] !== QUOTE) return false;
    const nameEnd = stringEnd(body, i);
    if (nameEnd < 0) return false;
    const field = matchField(body, i, nameEnd, fields, wanted);
    if (field === INVALID) return false;
    i = skipWs(body, nameEnd);
    if (body[i] !== COLON) return false;
    i = skipWs(body, i + 1);
    const valueEnd = skipValue(body, i);
    if (valueEnd < 0) return false;
    if (field !== undefined && !onValue(field, i, valueEnd)) return false;
    i = skipWs(body, valueEnd);
    if (body[i] === COMMA) {
      i = skipWs(body, i + 1);
      continue;
    }
    if (body[i] === RBRACE) return atEnd(body, i + 1);
    return false;
  }
  return false;
}

const INVALID = Symbol('invalid');

function isWs(b: number | undefined): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function skipWs(body: Uint8Array, i: number): number {
  while (isWs(body[i])) i++;
  return i;
}

function atEnd(body: Uint8Array, i: number): boolean {
  return skipWs(body, i) === body.length;
}

/** Bytes of a string walked one by one before jumping to its next quote natively (memchr). */
const INLINE_BYTES = 32;
/** Distance to the next quote from which the escape search runs natively too. */
const LONG_STRETCH = 256;

/**
 * Index after the closing quote of the string opening at `start`, or -1. Short strings and dense escapes
 * are walked byte by byte; a long stretch without escapes is jumped over with indexOf. The backslash
 * search stops at the quote found, so the whole body is still one linear pass.
 */
function stringEnd(body: Uint8Array, start: number): number {
  const n = body.length;
  let i = start + 1;
  for (;;) {
    const stop = Math.min(n, i + INLINE_BYTES);
    while (i < stop) {
      const b = body[i]!;
      if (b === QUOTE) return i + 1;
      i += b === BACKSLASH ? 2 : 1;
    }
    if (i >= n) return -1;
    const q = body.indexOf(QUOTE, i);
    if (q < 0) return -1;
    if (q - i >= LONG_STRETCH) {
      // A view is an allocation: worth it only when it saves walking a long stretch.
      const escape = body.subarray(i, q).indexOf(BACKSLASH);
      if (escape < 0) return q + 1;
      i += escape + 2;
      continue;
    }
    while (i < q) i += body[i] === BACKSLASH ? 2 : 1;
    // Landing on the quote means it was not escaped; past it, a backslash took it.
    if (i === q) return q + 1;
  }
}

/** Index after the value starting at `start` (delimited, not validated), or -1. */
function skipValue(body: Uint8Array, start: number): number {
  const c = body[start];
  if (c === QUOTE) return stringEnd(body, start);
  if (c === LBRACE || c === LBRACKET) {
    let depth = 0;
    let i = start;
    while (i < body.length) {
      const b = body[i]!;
      // `[` | 0x20 is `{` and `]` | 0x20 is `}`: one comparison per bracket pair, and no other byte maps there.
      const folded = b | 0x20;
      if (folded === LBRACE) {
        if (++depth > MAX_NESTING) return -1;
      }
      else if (folded === RBRACE) {
        if (--depth === 0) return i + 1;
      } else if (b === QUOTE) {
        i = stringEnd(body, i);
        if (i < 0) return -1;
        continue;
      }
      i++;
    }
    return -1;
  }
  let i = start;
  while (i < body.length) {
    const b = body[i]!;
    if (b === COMMA || b === RBRACE || b === RBRACKET || isWs(b)) break;
    i++;
  }
  return i > start ? i : -1;
}

/** Which of `fields` the name at [start, end) is (quotes included); INVALID when it is not a JSON string. */
function matchField(body: Uint8Array, start: number, end: number, fields: readonly string[], wanted: readonly Buffer[]): string | undefined | typeof INVALID {
  const inner = body.subarray(start + 1, end - 1);
  if (inner.indexOf(BACKSLASH) < 0) {
    // Without escapes a name is its bytes: compare them, no string built.
    for (let f = 0; f < wanted.length; f++) if (Buffer.compare(wanted[f]!, inner) === 0) return hasControl(inner) ? INVALID : fields[f];
    return undefined;
  }
  // An escape can only shorten a name (`\u0061` is six bytes for one char): a longer one matches nothing.
  if (!wanted.some((w) => inner.length <= w.length * 6)) return undefined;
  const name = parseScalar(body, start, end);
  if (name === INVALID) return INVALID;
  const f = fields.indexOf(name as string);
  return f < 0 ? undefined : fields[f];
}

function hasControl(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b < 0x20) return true;
  return false;
}

function readValue(body: Uint8Array, start: number, end: number): unknown {
  const c = body[start];
  return c === LBRACE || c === LBRACKET ? NESTED : parseScalar(body, start, end);
}

/** JSON.parse of one flat scalar: linear in its length, and the exact reading JSON.parse gives. */
function parseScalar(body: Uint8Array, start: number, end: number): unknown {
  try {
    return JSON.parse(Buffer.from(body.buffer, body.byteOffset + start, end - start).toString('utf8')) as unknown;
  } catch {
    return INVALID;
  }
}
