// The schema's number and boolean fields, which also take text holding one (for `${VAR}` expansion).
import { z } from 'zod';

// Number and boolean fields also take text holding one, because `${VAR}` expansion (environment.ts) leaves text:
// `port: ${PORT:-8787}` must work. Only these fields convert: a key that is all digits stays a string.
// Complaints say what was expected and never echo the value (a secret pasted into the wrong field).

/** Decimal text, with an optional exponent; no hex, no Infinity, no empty string. */
const NUMBER_TEXT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

function numberFromText(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const t = v.trim();
  return NUMBER_TEXT.test(t) ? Number(t) : v;
}

function booleanFromText(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const t = v.trim().toLowerCase();
  return t === 'true' ? true : t === 'false' ? false : v;
}

function textIsNot(what: string) {
  return (issue: { readonly code?: string; readonly input?: unknown }): string | undefined => {
    if (issue.code !== 'invalid_type' || typeof issue.input !== 'string') return undefined;
    return issue.input.trim() === ''
      ? `expected ${what}, got an empty value (an empty variable?)`
      : `expected ${what}, got text that is not one`;
  };
}

export const number = () => z.number({ error: textIsNot('a number') });
export const boolean = () => z.boolean({ error: textIsNot('true or false') });
export const num = <T extends z.ZodType>(schema: T) => z.preprocess(numberFromText, schema);
export const bool = <T extends z.ZodType>(schema: T) => z.preprocess(booleanFromText, schema);
