// Circuit breaking per upstream: after `failures` server faults (5xx, connection errors, headers
// timeouts) within `windowMs`, the upstream is open (skipped: requests go to their fallback) for
// `openMs`; then half-open: one request is let through as the probe, and its answer closes the circuit
// or opens it again. Pure apart from the counts it keeps; `now` comes in.

export interface CircuitSettings {
  readonly failures: number;
  readonly windowMs: number;
  readonly openMs: number;
}

export type CircuitState = 'closed' | 'open' | 'half-open';

/** Longest a half-open probe may hold the circuit if its end is never reported. */
const PROBE_LEASE_MS = 60_000;

export class Circuit {
  readonly #s: CircuitSettings;
  /** Times of recent faults (at most `failures` kept). */
  #faults: number[] = [];
  #openUntil = 0;
  #probeUntil = 0;
  /** Told when the circuit opens (to share it with other replicas). */
  readonly #onOpen: ((until: number) => void) | undefined;

  constructor(settings: CircuitSettings, onOpen?: (until: number) => void) {
    this.#s = settings;
    this.#onOpen = onOpen;
  }

  state(now: number): CircuitState {
    if (now < this.#openUntil) return 'open';
    return this.#openUntil > 0 ? 'half-open' : 'closed';
  }

  /** When the circuit lets a request through again (epoch ms); 0 when it does now. */
  get openUntil(): number {
    return this.#openUntil;
  }

  /**
   * Whether a request may go to this upstream now. Half-open, only one at a time (the probe); it must
   * report `success` or `fault` (a probe never reported frees the circuit after a lease).
   */
  admit(now: number): boolean {
    const state = this.state(now);
    if (state === 'closed') return true;
    if (state === 'open') return false;
    if (now < this.#probeUntil) return false;
    this.#probeUntil = now + PROBE_LEASE_MS;
    return true;
  }

  /** The probe ended without an answer either way (its client left): the next request may probe. */
  releaseProbe(): void {
    this.#probeUntil = 0;
  }

  /** A server fault (not the key's, not the request's). */
  fault(now: number): void {
    const state = this.state(now);
    // Open: a late report of a request sent before it opened; the opening already counted such faults.
    if (state === 'open') return;
    if (state === 'half-open') {
      this.#open(now);
      return;
    }
    this.#faults = this.#faults.filter((t) => now - t < this.#s.windowMs);
    this.#faults.push(now);
    if (this.#faults.length >= this.#s.failures) this.#open(now);
  }

  /** An answer (any status but a server fault): the upstream is up. */
  success(now: number): void {
    const state = this.state(now);
    // Open: a late answer to a request sent before it opened; only the half-open probe may close it.
    if (state === 'open') return;
    if (state === 'closed' && this.#faults.length === 0) return;
    this.#openUntil = 0;
    this.#probeUntil = 0;
    this.#faults = [];
  }

  /**
   * Another replica opened it (shared through the state store): only ever extended, and never past this
   * replica's own `now + openMs` (a replica with a clock running fast, or a garbled fact, would otherwise
   * skip a healthy upstream for good). Anything but a finite number is ignored.
   */
  openFor(until: unknown, now: number): void {
    if (typeof until !== 'number' || !Number.isFinite(until)) return;
    const capped = Math.min(until, now + this.#s.openMs);
    if (capped <= now || capped <= this.#openUntil) return;
    this.#openUntil = capped;
    this.#probeUntil = 0;
  }

  #open(now: number): void {
    this.#openUntil = now + this.#s.openMs;
    this.#probeUntil = 0;
    this.#faults = [];
    this.#onOpen?.(this.#openUntil);
  }
}
