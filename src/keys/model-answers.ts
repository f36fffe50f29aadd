// Upstream answers refusing a model (403/404 "this project has no access to model X"), kept so that a
// request for that model, while every key is barred from it, gets the upstream's own answer at once
// instead of walking the pool again. Bounded: model names come from clients.
import type { KeyState } from './key-state.js';

/** An upstream's answer kept to be given again: status, its end-to-end headers, the (decoded) body. */
export interface UpstreamAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly body: string;
}

/** Models whose refusal is remembered. */
const MAX_ANSWERS = 64;

export class ModelAnswers {
  readonly #answers = new Map<string, UpstreamAnswer>();

  /**
   * Keeps the status, the body and the content type: per-response headers (set-cookie, request ids, the
   * answering key's organisation) belong to the response that carried them, not to later clients.
   */
  remember(model: string, answer: UpstreamAnswer): void {
    const ct = answer.headers['content-type'];
    this.#answers.delete(model);
    this.#answers.set(model, { status: answer.status, headers: ct === undefined ? {} : { 'content-type': ct }, body: answer.body });
    if (this.#answers.size > MAX_ANSWERS) this.#answers.delete(this.#answers.keys().next().value as string);
  }

  /** The answer for the model, if every usable key is barred from it at `now`. */
  forModel(model: string, states: readonly KeyState[], now: number): UpstreamAnswer | undefined {
    const answer = this.#answers.get(model);
    if (answer === undefined) return undefined;
    for (const s of states) {
      if (s.disabled !== undefined) continue;
      const scope = s.scopes.get(model);
      if (scope === undefined || scope.reason !== 'model_unavailable' || scope.cooldownUntil <= now) return undefined;
    }
    return answer;
  }
}
