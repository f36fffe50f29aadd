// A fallback to another model rewrites one thing in the request: the top-level `model` of its JSON
// body (every occurrence, should the name repeat: parsers differ on which wins). Everything else is sent
// byte for byte. Pure.
import { topLevelRanges } from './top-level-json.js';

/** The body with its top-level `model` set to `model`; undefined when the body has no readable one. */
export function withModel(body: Buffer | undefined, model: string): Buffer | undefined {
  if (body === undefined) return undefined;
  const ranges = topLevelRanges(body, 'model');
  if (ranges === undefined || ranges.length === 0) return undefined;
  const value = Buffer.from(JSON.stringify(model), 'utf8');
  const parts: Buffer[] = [];
  let at = 0;
  for (const r of ranges) {
    parts.push(body.subarray(at, r.start), value);
    at = r.end;
  }
  parts.push(body.subarray(at));
  return Buffer.concat(parts);
}
