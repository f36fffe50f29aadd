// One request waiting in the room: how it enters (its abort listener and its timeout), leaves exactly
// once (served, timed out, aborted, sent away), and what its ending adds to the room's counters.
import type { Clock } from '../clock.js';
import type { WaitingRoomMetrics, WaitRequest, WaitResult } from './room-contract.js';
import type { QueueEntry } from './room-queues.js';

export interface Waiter {
  readonly req: WaitRequest;
  readonly started: number;
  /** Entered through a full room: not queued, served only if the pool has a key at once. */
  readonly passing: boolean;
  entry: QueueEntry<Waiter> | undefined;
  /** Pool generation in which `tryAcquire` said no although the pool had a key for the demand. */
  declinedGen: number;
  /** The last client visit of a dispatch that asked for its key (each visit asks each head once). */
  visit: number;
  /** Ends the wait with this result; false when it had already ended (the caller keeps what it holds). */
  settle(r: WaitResult): boolean;
}

/**
 * A waiter for `req`, settled by `settle`, its timeout or its signal (which rejects). Leaving takes it
 * out of its line (`remove`) and counts the result once.
 */
export function enterWaiter(
  req: WaitRequest,
  passing: boolean,
  clock: Clock,
  metrics: WaitingRoomMetrics,
  remove: (entry: QueueEntry<Waiter>) => void,
  resolve: (r: WaitResult) => void,
  reject: (reason: unknown) => void,
): Waiter {
  const started = clock.now();
  let settled = false;
  let cancelTimeout = (): void => {};
  const leave = (): boolean => {
    if (settled) return false;
    settled = true;
    cancelTimeout();
    req.signal.removeEventListener('abort', onAbort);
    if (w.entry !== undefined) remove(w.entry);
    return true;
  };
  const onAbort = (): void => {
    if (leave()) reject(req.signal.reason);
  };
  const w: Waiter = {
    req,
    started,
    passing,
    entry: undefined,
    declinedGen: -1,
    visit: -1,
    settle: (r) => {
      if (!leave()) return false;
      countResult(metrics, w, r, clock.now() - started);
      resolve(r);
      return true;
    },
  };
  req.signal.addEventListener('abort', onAbort, { once: true });
  cancelTimeout = clock.timer(req.maxWaitMs, () => w.settle({ kind: 'timeout' }));
  return w;
}

function countResult(m: WaitingRoomMetrics, w: Waiter, r: WaitResult, waited: number): void {
  if (r.kind === 'acquired') {
    if (w.passing) m.servedWhileFull++;
    else {
      m.served++;
      m.waitMsTotal += waited;
    }
  } else if (r.kind === 'timeout') {
    m.timedOut++;
    m.waitMsTotal += waited;
  } else if (r.kind === 'no_keys') m.noKeys++;
  else m.rejectedFull++;
}
