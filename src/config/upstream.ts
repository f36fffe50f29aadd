// An upstream as the proxy uses it: the schema's entry with its provider preset applied, its keys gathered
// (upstream-keys.ts), its base URL split into origin and path, and its chains as steps.
import { globToRegExp } from '../clients/client.js';
import type { Key } from '../keys/key.js';
import type { Env } from './environment.js';
import { PRESETS, type Provider, type WireFormat } from './presets.js';
import { gatherKeys } from './upstream-keys.js';
import { COMMIT_ON_CONTENT_DEFAULT_MS, type UpstreamInput } from './upstream-schema.js';

/** Where the pool key goes on each attempt. */
export type KeyPlacement =
  /** In this header; `authorization` as `Bearer <key>`, any other bare. */
  | { readonly kind: 'header'; readonly name: string }
  /** As this query parameter. */
  | { readonly kind: 'query'; readonly name: string };

export interface Upstream {
  readonly name: string;
  readonly provider: Provider;
  readonly strategy: UpstreamInput['strategy'];
  readonly sticky: UpstreamInput['sticky'];
  readonly prefix: string;
  /** `scheme://host:port` of `baseUrl`. */
  readonly origin: string;
  /** Path part of `baseUrl` without a trailing slash ('' for the root). */
  readonly basePath: string;
  /** The header the pool key goes in (kept for tools that print it; `auth` is what the proxy uses). */
  readonly authHeader: string;
  readonly auth: KeyPlacement;
  /** Sent to the upstream when the client did not send them. */
  readonly defaultHeaders: Readonly<Record<string, string>>;
  /** The shape of keypool's own errors and stream-end events here. */
  readonly format: WireFormat;
  /** Hold a stream's head until its first event for at most this long (ms); undefined: off. */
  readonly commitOnContentMs: number | undefined;
  /** Models served (for routing on a shared prefix); undefined: any. */
  readonly models: readonly RegExp[] | undefined;
  /** Where a request goes when this upstream cannot serve it (see schema `fallbacks`). */
  readonly fallbacks: readonly FallbackStep[];
  /** Chains for some models instead of `fallbacks`, first match wins. */
  readonly modelFallbacks: readonly { readonly pattern: RegExp; readonly steps: readonly FallbackStep[] }[];
  /** Where a request goes after a 400 saying its prompt is too long for the model. */
  readonly contextLengthFallbacks: readonly FallbackStep[];
  readonly circuit: { readonly failures: number; readonly windowMs: number; readonly openMs: number } | undefined;
  readonly keys: readonly Key[];
  readonly probe: UpstreamInput['probe'];
}

/** One step of a fallback chain: an upstream, and the model to ask it for (undefined: the request's own). */
export interface FallbackStep {
  readonly upstream: string;
  readonly model: string | undefined;
}

export function resolveUpstream(u: UpstreamInput, index: number, env: Env, problems: string[], warnings: string[]): Upstream {
  const at = `upstreams[${index}]`;
  const keys = gatherKeys(u, at, env, problems, warnings);
  const preset = PRESETS[u.provider];
  const baseUrl = u.baseUrl ?? preset.baseUrl;
  if (baseUrl === undefined) problems.push(`${at}.baseUrl: provider ${u.provider} needs a baseUrl (the resource or host to send to)`);
  const base = new URL(baseUrl ?? 'http://invalid.invalid');
  const authHeader = u.authHeader ?? ('header' in preset.auth ? preset.auth.header : 'authorization');
  const auth: KeyPlacement =
    u.authQuery !== undefined
      ? { kind: 'query', name: u.authQuery }
      : u.authHeader === undefined && 'query' in preset.auth
        ? { kind: 'query', name: preset.auth.query }
        : { kind: 'header', name: authHeader };
  const commit = u.commitOnContent ?? preset.commitOnContent;
  return {
    name: u.name,
    provider: u.provider,
    strategy: u.strategy,
    sticky: u.sticky,
    prefix: u.prefix ?? preset.prefix,
    origin: base.origin,
    basePath: base.pathname.replace(/\/+$/, ''),
    authHeader,
    auth,
    defaultHeaders: { ...preset.headers, ...u.headers },
    format: u.errorFormat ?? preset.format,
    commitOnContentMs: commit === false ? undefined : commit === true ? COMMIT_ON_CONTENT_DEFAULT_MS : commit.maxWaitMs,
    models: u.models?.map(globToRegExp),
    fallbacks: steps(u.fallbacks),
    modelFallbacks: Object.entries(u.modelFallbacks ?? {}).map(([glob, list]) => ({ pattern: globToRegExp(glob), steps: steps(list) })),
    contextLengthFallbacks: steps(u.errorFallbacks?.contextLengthExceeded),
    circuit: u.circuit,
    keys,
    probe: u.probe,
  };
}

export function steps(list: readonly { upstream: string; model?: string | undefined }[] | undefined): FallbackStep[] {
  return (list ?? []).map((t) => ({ upstream: t.upstream, model: t.model }));
}
