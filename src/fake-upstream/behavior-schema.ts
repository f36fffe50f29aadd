// Validates behaviours at the door (script, setDefault, options, --keys-json) so a typo fails where
// it was written instead of as a confusing response mid-test. Errors never name the key they belong to.
import { z } from 'zod';
import { RATE_LIMIT_STYLES, type Behavior } from './behaviors.js';

const ms = z.int().min(0);
// Node's writeHead rejects anything outside 100-999; 1xx would not end the exchange.
const httpStatus = z.int().min(200).max(599);

export const behaviorSchema: z.ZodType<Behavior> = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('ok'), delayMs: ms.optional() }),
  z.strictObject({
    kind: z.literal('stream'),
    chunks: z.int().min(1).max(10_000).optional(),
    gapMs: ms.optional(),
    delayMs: ms.optional(),
  }),
  z.strictObject({
    kind: z.literal('rate_limit'),
    style: z.enum(RATE_LIMIT_STYLES).optional(),
    ms: ms.optional(),
  }),
  z.strictObject({ kind: z.literal('resource_exhausted'), daily: z.boolean().optional(), ms: ms.optional() }),
  z.strictObject({ kind: z.literal('insufficient_quota') }),
  z.strictObject({ kind: z.literal('payment_required') }),
  z.strictObject({ kind: z.literal('unauthorized') }),
  z.strictObject({ kind: z.literal('forbidden') }),
  z.strictObject({ kind: z.literal('key_revoked') }),
  z.strictObject({ kind: z.literal('model_not_found'), status: z.union([z.literal(403), z.literal(404)]).optional() }),
  z.strictObject({ kind: z.literal('server_error'), status: httpStatus.optional() }),
  z.strictObject({ kind: z.literal('overloaded') }),
  z.strictObject({
    kind: z.literal('error_in_stream'),
    after: z.int().min(0).max(10_000).optional(),
    gapMs: ms.optional(),
  }),
  z.strictObject({ kind: z.literal('hang') }),
  z.strictObject({
    kind: z.literal('status'),
    status: httpStatus,
    body: z.string().optional(),
    headers: z.record(z.string(), z.string()).optional(),
  }),
]);

/** Returns a validated copy of `value`, or throws a TypeError that names `where` (never the key). */
export function parseBehavior(value: unknown, where: string): Behavior {
  const result = behaviorSchema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(behaviour)'}: ${issue.message}`)
    .join('; ');
  throw new TypeError(`fake-upstream: invalid behaviour in ${where}: ${issues}`);
}
