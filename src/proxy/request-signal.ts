// A request's cancellation, cheap when nothing cancels it: an AbortController (and its AbortSignal, an
// EventTarget) costs microseconds per request on the hot path, and most requests never wait on
// anything that needs one. The AbortSignal is made only when a wait asks for it (a backoff sleep, the
// waiting room), already aborted if the request is.

/** What the attempt loop reads of a request's cancellation: an AbortSignal is one too. */
export interface Cancellation {
  readonly aborted: boolean;
  readonly reason: unknown;
}

export class RequestSignal implements Cancellation {
  #ctl: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  /** An AbortSignal that follows this one, for APIs that take one. */
  get signal(): AbortSignal {
    if (this.#ctl === undefined) {
      this.#ctl = new AbortController();
      if (this.#aborted) this.#ctl.abort(this.#reason);
    }
    return this.#ctl.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#ctl?.abort(reason);
  }
}

/** The AbortSignal of a cancellation (itself, when it is one). */
export function abortSignalOf(c: Cancellation): AbortSignal {
  return c instanceof RequestSignal ? c.signal : (c as AbortSignal);
}
