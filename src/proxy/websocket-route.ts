// Which upstream a WebSocket upgrade goes to when several share its prefix, and whether its client may
// use it: the member serving the model the query names (`?model=`, as OpenAI's Realtime API does), else,
// with no model named, the prefix's default member. The HTTP routes' rules (chain.ts upstreamForModel,
// the client gate's allow-lists) applied to the handshake, so a WebSocket is no way around them. Pure.
import type { Upstream } from '../config/load.js';
import { KeypoolError } from '../errors.js';
import { upstreamForModel } from './chain.js';

/** What a prefix serves (proxy-handler.ts's route): its default member and every member. */
export interface PrefixRoute {
  /** The member that takes what no other lists (the prefix's only one, usually). */
  readonly upstream: Upstream;
  readonly group: readonly Upstream[];
}

/** A client's allow-lists (upstreams, models) for one upstream and model: the refusal, or undefined. */
export type AllowCheck = (upstream: string, model: string) => KeypoolError | undefined;

export type Routed =
  | { readonly ok: true; readonly upstream: Upstream }
  /** `upstream`: the one the refusal is logged against (the member chosen, else the default). */
  | { readonly ok: false; readonly upstream: Upstream; readonly error: KeypoolError };

/** The member of `route` serving `model` ('' when the query names none), checked against `allow`. */
export function routeUpgrade(route: PrefixRoute, model: string, allow: AllowCheck | undefined): Routed {
  const { upstream: fallback, group } = route;
  // Without a model there is nothing to route by: HTTP would refuse on a prefix whose members all list
  // models, but a Responses API session names its model per message, so the default member takes it.
  const member = model === '' || group.length === 1 ? fallback : upstreamForModel(group, model);
  if (member === undefined) {
    const names = group.map((u) => u.name).join(', ');
    return { ok: false, upstream: fallback, error: new KeypoolError('keypool_model_not_served', `No upstream on ${fallback.prefix} serves model ${model}; they serve ${names}'s listed models.`) };
  }
  const refused = allow?.(member.name, model);
  return refused === undefined ? { ok: true, upstream: member } : { ok: false, upstream: member, error: refused };
}
