// One proxied request on a prefix, from its first byte to its log line: hygiene, the client's token and
// limits, the body buffered once, the upstream that serves its model (several may share a prefix), the
// walk along its chain of targets (walk-chain.ts), each target's attempt loop (rotate.ts), then the
// answer delivered (deliver.ts) and one record for the log and the listeners.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Upstream } from '../config/load.js';
import { KeypoolError } from '../errors.js';
import type { Lease } from '../keys/pool.js';
import { Attempt } from './attempt.js';
import { chainFor, upstreamForModel } from './chain.js';
import { sendError } from './client-response.js';
import { CLIENT_CLOSED, deliver, type Delivered } from './deliver.js';
import { headerSafe, headerValue, pathOnly, setKey, upstreamRequestHeaders, withDefaults, withoutQueryParams, withQueryKey } from './headers.js';
import { StreamKeepAlive } from './keep-alive.js';
import { withModel } from './model-body.js';
import { modelsPath, serveModelList } from './model-list.js';
import { pathHints, withPathModel } from './path-model.js';
import { readBody } from './request-body.js';
import { requestInfo } from './request-info.js';
import { requestIdOf } from './request-id.js';
import { RequestSignal } from './request-signal.js';
import { headerCountError, resolveTarget } from './request-target.js';
import { logFields, type RequestListener, type RequestRecord } from './request-record.js';
import { RequestAborted, rotate, type RotateOutcome, type TrailStep } from './rotate.js';
import type { Active, ProxyDeps } from './proxy-handler.js';
import type { Target } from './targets.js';
import { walkChain, type ChainRun } from './walk-chain.js';

/** A client's x-request-id longer than this is cut (it is logged and echoed). */
const NO_TRAIL: readonly TrailStep[] = [];
const NO_FIELDS: readonly string[] = [];
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
/** Query parameters that carry a client's credential somewhere (Google's `key`): dropped before forwarding. */
const CREDENTIAL_PARAMS: ReadonlySet<string> = new Set(['key', 'api-key', 'api_key']);

/** The scope of a request without a readable model: its first path segments, e.g. "path:/v1/audio/transcriptions". */
function endpointScope(path: string): string {
  const q = path.indexOf('?');
  const segments = (q === -1 ? path : path.slice(0, q)).split('/').filter((p) => p !== '').slice(0, 3);
  return `path:/${segments.join('/')}`;
}

export interface UpstreamHandler {
  /** The upstream that takes what no other member lists (the prefix's only one, usually). */
  readonly upstream: Upstream;
  /** Every upstream on this prefix. */
  readonly group: readonly Upstream[];
  readonly run: (req: IncomingMessage, res: ServerResponse, active: Set<Active>) => Promise<void>;
}

/** What one request knows once it has been read, for its log line. */
interface Seen {
  client: string;
  model: string;
  stream: boolean;
}

export function prefixHandler(
  group: readonly Upstream[],
  deps: ProxyDeps,
  targets: ReadonlyMap<string, Target>,
  listeners: readonly RequestListener[],
  byClient: Map<string, number>,
): UpstreamHandler {
  const fallback = group.find((u) => u.models === undefined) ?? group[0]!;
  const { config, clock, agent, logger, gate } = deps;
  const { retry, queue } = config;
  const bodyLimit = config.server.bodyLimitBytes;
  const format = fallback.format;
  const names = group.map((u) => u.name);

  const run = async (req: IncomingMessage, res: ServerResponse, active: Set<Active>): Promise<void> => {
    const admitted: { release: (() => void) | undefined } = { release: undefined };
    try {
      await serve(req, res, active, admitted);
    } finally {
      // A client's in-flight count is held until its request is over, however it ends.
      admitted.release?.();
    }
  };

  const serve = async (req: IncomingMessage, res: ServerResponse, active: Set<Active>, admitted: { release: (() => void) | undefined }): Promise<void> => {
    const started = performance.now();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const host = headerValue(req.headers.host);
    const requestId = requestIdOf(req.headers);
    const seen: Seen = { client: 'unknown', model: '', stream: false };
    const log = (status: number, o: RotateOutcome | undefined, served: { upstream: string; model?: string | undefined; walked?: readonly string[] }, d?: Partial<Delivered>): void => {
      const record: RequestRecord = {
        id: requestId,
        method,
        path: pathOnly(url),
        upstream: served.upstream,
        chain: served.walked ?? [served.upstream],
        client: seen.client,
        model: seen.model,
        servedModel: served.model,
        stream: seen.stream,
        status,
        error: d?.error,
        attempts: o?.attempts ?? 0,
        retries: o?.retries ?? 0,
        key: o?.key?.key.name,
        trail: o?.trail ?? NO_TRAIL,
        cut: d?.cut,
        totalMs: performance.now() - started,
        waitedMs: o?.waitedMs ?? 0,
        upstreamMs: (o?.upstreamMs ?? 0) + (d?.deliveredMs ?? 0),
        upstreamRequestId: d?.upstreamRequestId,
        usage: d?.usage,
      };
      // Usage is the serving key's: counted on the pool of the upstream that answered.
      if (d?.usage !== undefined && o?.key !== undefined) targets.get(served.upstream)?.pool.countTokens(o.key, d.usage.input, d.usage.output);
      // The line's fields are built only when the line is written (log.level warn and above skip it).
      if (logger.isLevelEnabled('info')) logger.info(logFields(record), 'request');
      for (const fn of listeners) fn(record);
    };
    // The request id goes on with the head that is written (a header set ahead of writeHead would put
    // every delivered answer on node's slow merging path).
    const stamp = (): void => {
      res.setHeader('x-keypool-request-id', requestId);
    };
    const refuse = (error: KeypoolError, upstream: string): void => {
      stamp();
      sendError(res, error, 0, undefined, 0, format);
      log(error.status, undefined, { upstream }, { error: error.code });
    };
    // Hygiene first: nothing goes anywhere for a target that could leave the base path, an odd method or too many headers.
    const hygiene = resolveTarget(method, url, fallback, host);
    const refused = hygiene.ok ? headerCountError(req.rawHeaders.length / 2) : hygiene.error;
    if (refused !== undefined || !hygiene.ok) {
      res.setHeader('connection', 'close');
      req.resume();
      refuse(refused ?? new KeypoolError('keypool_invalid_path', 'The request target could not be forwarded.'), fallback.name);
      return;
    }

    // With clients configured, nothing of a request without a known token is read or sent anywhere.
    /** Answers before (or instead of) reading the body, and closes the connection once it is sent. */
    const refuseBeforeBody = (error: KeypoolError): void => {
      res.setHeader('connection', 'close');
      // A body still coming (or never ending) is not waited for: the connection closes after the answer.
      res.once('finish', () => req.socket.destroySoon());
      req.resume();
      refuse(error, fallback.name);
    };
    const known = gate?.identify(req.headers);
    if (gate !== undefined && known === undefined) {
      refuseBeforeBody(gate.unauthorized());
      return;
    }
    seen.client = known?.name ?? headerValue(req.headers[queue.clientHeader]) ?? req.socket.remoteAddress ?? 'unknown';
    // A client at its limit is refused before its body is read: nothing of it is buffered.
    const admission = known === undefined || gate === undefined ? undefined : gate.admit(known, names, clock.now());
    if (admission !== undefined && !admission.ok) {
      refuseBeforeBody(admission.error);
      return;
    }
    // Counted until the request is over, however it ends (the admin view's "in flight" too).
    const counted = seen.client;
    byClient.set(counted, (byClient.get(counted) ?? 0) + 1);
    admitted.release = () => {
      admission?.release();
      const n = (byClient.get(counted) ?? 1) - 1;
      if (n > 0) byClient.set(counted, n);
      else byClient.delete(counted);
    };

    const read = await readBody(req, bodyLimit);
    if (read === 'too_large') {
      refuseBeforeBody(new KeypoolError('keypool_body_too_large', 'Request body is larger than server.bodyLimitBytes.'));
      return;
    }
    if (read === 'aborted') {
      res.destroy();
      log(CLIENT_CLOSED, undefined, { upstream: fallback.name });
      return;
    }
    const body = read;
    const stickyFields = fallback.sticky?.bodyFields ?? NO_FIELDS;
    const info = requestInfo(body, headerValue(req.headers['content-type']), stickyFields);
    let hints = pathHints(fallback.provider, hygiene.path);
    // On a shared prefix, any member's provider may name the model in the path (Gemini, Azure).
    for (let i = 0; i < group.length && hints.model === undefined && group.length > 1; i++) hints = pathHints(group[i]!.provider, hygiene.path);
    // On a shared prefix, GET <prefix>/models is every member's list, and GET <prefix>/models/<id> the member serving <id>.
    // HEAD is GET without the content: its list comes from the default member alone (no body to merge).
    const listing = group.length > 1 && (method === 'GET' || method === 'HEAD') ? modelsPath(hygiene.path, fallback.basePath) : undefined;
    const model = hints.model ?? listing?.model ?? info.demand.model;
    seen.model = model;
    seen.stream = info.stream || hints.stream;
    const stream = seen.stream;
    const member = group.length === 1 || listing?.kind === 'list' ? fallback : upstreamForModel(group, model);
    if (member === undefined) {
      refuse(new KeypoolError('keypool_model_not_served', `No upstream on ${fallback.prefix} serves model ${model === '' ? '(none named)' : model}; they serve ${group.map((u) => u.name).join(', ')}'s listed models.`), fallback.name);
      return;
    }
    // A list names no model: which members it asks is the client's upstreams allow-list (below).
    const refusedModel = known === undefined || listing?.kind === 'list' ? undefined : gate?.refuseModel(known, member.name, model);
    if (refusedModel !== undefined) {
      refuse(refusedModel, member.name);
      return;
    }

    const ctl = new RequestSignal();
    let current: Attempt | undefined;
    const abort = (why: RequestAborted): void => {
      if (ctl.aborted) return;
      ctl.abort(why);
      current?.cancel(why);
    };
    const onClose = (): void => {
      if (!res.writableFinished) abort(new RequestAborted('client_closed'));
    };
    res.on('close', onClose);
    const cancelDeadline = clock.timer(retry.timeoutMs, () => abort(new RequestAborted('deadline')));
    const keepAlive = queue.streamKeepAlive && stream ? new StreamKeepAlive(res, clock, queue.keepAliveIntervalMs) : undefined;
    // While the loop runs nothing has been sent: a cut is a plain close. Delivery replaces it.
    const me: { cut: (reason: string) => void } = { cut: () => abort(new RequestAborted('shutdown')) };
    active.add(me);
    const done = (): void => {
      cancelDeadline();
      keepAlive?.stop();
      res.off('close', onClose);
      active.delete(me);
    };
    const deadline = clock.now() + retry.timeoutMs;
    const clientHeaders = upstreamRequestHeaders(req.headers);
    const steps = chainFor(member, model);
    const pristine = steps.length > 1 || member.contextLengthFallbacks.length > 0 || group.length > 1 ? { ...clientHeaders } : undefined;
    let targetsTried = 0;
    const session = fallback.sticky ? (headerValue(req.headers[fallback.sticky.header]) ?? info.sessionFromBody) : undefined;

    /** The request on one target of its chain: its own base path, headers, key and (maybe) model. */
    const onTarget = async (step: ChainRun): Promise<RotateOutcome> => {
      const u = step.target.upstream;
      const asked = step.model ?? model;
      const resolved = u === fallback ? hygiene : resolveTarget(method, url, { prefix: fallback.prefix, basePath: u.basePath }, host);
      if (!resolved.ok) return notSent(resolved.error);
      // A credential in the query (Gemini clients send ?key=) is the client's, never forwarded.
      let path = withoutQueryParams(resolved.path, CREDENTIAL_PARAMS);
      let sent = body;
      if (step.model !== undefined && step.model !== model) {
        path = withPathModel(u.provider, path, step.model);
        sent = withModel(body, step.model) ?? body;
      }
      // Headers per target: one upstream's key header must never reach another. The first target takes
      // the client's copy itself; any later one a copy of it as it was before.
      const headers = withDefaults(pristine === undefined || targetsTried++ === 0 ? clientHeaders : { ...pristine }, u.defaultHeaders);
      const headersTimeoutMs = stream ? retry.streamHeadersTimeoutMs : retry.headersTimeoutMs;
      return rotate(step.target.rotate, {
        signal: ctl,
        deadline,
        method,
        // Rate limits and refusals are kept per model; a request whose model cannot be read (a multipart
        // upload, a non-JSON body) is kept per endpoint instead, never key-wide.
        demand: { model: asked === '' ? endpointScope(resolved.path) : asked, tokens: info.demand.tokens },
        client: seen.client,
        session,
        onWait: keepAlive
          ? () => {
              if (!keepAlive.committed) stamp();
              keepAlive.start();
            }
          : undefined,
        stream,
        commitOnContentMs: stream ? u.commitOnContentMs : undefined,
        budget: step.budget,
        leaveOnFault: step.leaveOnFault,
        rerouteContextLength: step.rerouteContextLength,
        send: (lease: Lease) => {
          const o = lease.state.key.options;
          // A key with its own baseUrl (another Azure resource) gets the same request under its own base path.
          let to = o.basePath === undefined ? path : o.basePath + path.slice(u.basePath.length);
          if (u.auth.kind === 'header') setKey(headers, u.auth.name, lease.state.key);
          else to = withQueryKey(to, u.auth.name, lease.state.key.reveal());
          current = new Attempt(agent, { origin: o.origin ?? u.origin, path: to, method: method as Dispatcher.HttpMethod, headers, body: sent, headersTimeoutMs, idleTimeoutMs: retry.idleTimeoutMs });
          return current;
        },
      });
    };

    /** Whether the client may be served by an upstream (with a model, when one is asked of it). */
    const allowed = (name: string, asked: string | undefined): boolean => known === undefined || gate === undefined || gate.mayUse(known, name, asked);
    if (listing?.kind === 'list' && method === 'GET') {
      // One request: the members the client may use share its budget, as the targets of a chain do.
      const budget = { charged: 0, waitedMs: 0 };
      const members = group.filter((u) => allowed(u.name, undefined));
      const listed = await serveModelList({ group: members, targets, format, run: (target, last) => onTarget({ target, model: undefined, budget, leaveOnFault: !last, rerouteContextLength: false }), keep: known === undefined || gate === undefined ? undefined : allowed });
      const d = await deliver(deliveryOf(res, keepAlive, NO_HEADERS), listed);
      // Not a fallback: the members asked are in the trail.
      log(d.status, listed, { upstream: fallback.name }, d);
      return;
    }

    const walked = await walkChain({ steps, contextSteps: member.contextLengthFallbacks, targets, allowed: (name, asked) => allowed(name, asked ?? model), run: onTarget, model });
    const servedBy = walked.target.upstream.name;
    const served = walked.model ?? model;
    // Said when the answer is not the primary's own: which upstream, and which model it was asked for.
    const extra = servedBy === member.name && served === model ? NO_HEADERS : { 'x-keypool-upstream': servedBy, 'x-keypool-model': headerSafe(served) };
    const d = await deliver(deliveryOf(res, keepAlive, extra), walked.outcome);
    log(d.status, walked.outcome, { upstream: servedBy, model: served === model ? undefined : served, walked: walked.walked }, d);

    function deliveryOf(r: ServerResponse, k: StreamKeepAlive | undefined, extraHeaders: Readonly<Record<string, string>>) {
      return { res: r, requestId, format, keepAlive: k, extraHeaders, signal: ctl, abort, me, done, timeoutMs: retry.timeoutMs, idleTimeoutMs: retry.idleTimeoutMs, logger };
    }
  };
  return { upstream: fallback, group, run };
}

/** An outcome for a target the request could not even be addressed to: on to the next. */
function notSent(error: KeypoolError): RotateOutcome {
  return { kind: 'error', error, next: true, attempts: 0, retries: 0, waitedMs: 0, upstreamMs: 0, key: undefined, trail: NO_TRAIL };
}
