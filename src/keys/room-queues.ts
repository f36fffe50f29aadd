// The waiting room's lines, as pure bookkeeping (no pool, no clock): per client one FIFO per model, the
// clients in fair-rotation order, and every entry in arrival order. Adding, removing any entry (a waiter
// that aborts or times out from the middle of a line), and finding the oldest are O(1).

/** One waiting entry. Its link fields belong to RoomQueues: callers read `value` and the labels only. */
export class QueueEntry<T> {
  readonly value: T;
  readonly client: string;
  readonly model: string;
  /** Epoch ms it arrived. */
  readonly since: number;
  /** Arrival order over the whole room: lower is older. */
  readonly seq: number;
  line: ModelLine<T> | undefined;
  prev: QueueEntry<T> | undefined = undefined;
  next: QueueEntry<T> | undefined = undefined;
  older: QueueEntry<T> | undefined = undefined;
  newer: QueueEntry<T> | undefined = undefined;

  constructor(value: T, line: ModelLine<T>, since: number, seq: number) {
    this.value = value;
    this.client = line.owner.client;
    this.model = line.model;
    this.since = since;
    this.seq = seq;
    this.line = line;
  }

  /** Still in the room. */
  get queued(): boolean {
    return this.line !== undefined;
  }
}

/** One client's requests for one model, oldest first. */
export class ModelLine<T> {
  readonly owner: ClientLines<T>;
  readonly model: string;
  head: QueueEntry<T> | undefined = undefined;
  tail: QueueEntry<T> | undefined = undefined;

  constructor(owner: ClientLines<T>, model: string) {
    this.owner = owner;
    this.model = model;
  }
}

/** One client's lines, one per model it waits on. */
export class ClientLines<T> {
  readonly client: string;
  readonly lines = new Map<string, ModelLine<T>>();
  length = 0;
  /**
   * The scheduler's note on this client: it found nothing to serve in pool generation `stallGen`, and
   * nothing of its will change by time alone before `stallUntil`.
   */
  stallGen = -1;
  stallUntil = 0;

  constructor(client: string) {
    this.client = client;
  }

  /** The head of each of its model lines, oldest first: the requests of this client a key may serve now. */
  heads(): QueueEntry<T>[] {
    const out: QueueEntry<T>[] = [];
    for (const line of this.lines.values()) if (line.head !== undefined) out.push(line.head);
    if (out.length > 1) out.sort((a, b) => a.seq - b.seq);
    return out;
  }

  /** Arrival time of its oldest request (its lines' heads are each line's oldest). */
  oldestSince(): number {
    let since = Infinity;
    for (const line of this.lines.values()) if (line.head !== undefined && line.head.since < since) since = line.head.since;
    return since;
  }
}

export class RoomQueues<T> {
  /** Map order is the fair rotation order. */
  readonly #clients = new Map<string, ClientLines<T>>();
  /** Entries per model over all clients. */
  readonly #perModel = new Map<string, number>();
  #oldest: QueueEntry<T> | undefined;
  #newest: QueueEntry<T> | undefined;
  #size = 0;
  #seq = 0;

  get size(): number {
    return this.#size;
  }

  /** How many wait for this model, over all clients. */
  waitingFor(model: string): number {
    return this.#perModel.get(model) ?? 0;
  }

  /** Joins the end of the client's line for the model (a new client joins the end of the rotation). */
  add(client: string, model: string, since: number, value: T): QueueEntry<T> {
    let c = this.#clients.get(client);
    if (c === undefined) {
      c = new ClientLines<T>(client);
      this.#clients.set(client, c);
    }
    let line = c.lines.get(model);
    if (line === undefined) {
      line = new ModelLine(c, model);
      c.lines.set(model, line);
    }
    const e = new QueueEntry(value, line, since, this.#seq++);
    e.prev = line.tail;
    if (line.tail === undefined) line.head = e;
    else line.tail.next = e;
    line.tail = e;
    e.older = this.#newest;
    if (this.#newest === undefined) this.#oldest = e;
    else this.#newest.newer = e;
    this.#newest = e;
    c.length++;
    c.stallGen = -1;
    this.#perModel.set(model, this.waitingFor(model) + 1);
    this.#size++;
    return e;
  }

  /** Takes the entry out wherever it stands. Idempotent: false when it had already left. */
  remove(e: QueueEntry<T>): boolean {
    const line = e.line;
    if (line === undefined) return false;
    e.line = undefined;
    if (e.prev === undefined) line.head = e.next;
    else e.prev.next = e.next;
    if (e.next === undefined) line.tail = e.prev;
    else e.next.prev = e.prev;
    if (e.older === undefined) this.#oldest = e.newer;
    else e.older.newer = e.newer;
    if (e.newer === undefined) this.#newest = e.older;
    else e.newer.older = e.older;
    e.prev = e.next = e.older = e.newer = undefined;
    const c = line.owner;
    if (line.head === undefined) c.lines.delete(line.model);
    if (--c.length === 0) this.#clients.delete(c.client);
    const left = this.waitingFor(line.model) - 1;
    if (left === 0) this.#perModel.delete(line.model);
    else this.#perModel.set(line.model, left);
    this.#size--;
    return true;
  }

  /** The clients with waiters, in rotation order (a copy: serving reorders the rotation). */
  rotation(): ClientLines<T>[] {
    return [...this.#clients.values()];
  }

  /** A client just served goes to the back of the rotation. */
  toBack(c: ClientLines<T>): void {
    if (this.#clients.get(c.client) !== c) return;
    this.#clients.delete(c.client);
    this.#clients.set(c.client, c);
  }

  client(client: string): ClientLines<T> | undefined {
    return this.#clients.get(client);
  }

  /** The head of every model line of every client. */
  *heads(): Generator<QueueEntry<T>> {
    for (const c of this.#clients.values()) for (const line of c.lines.values()) if (line.head !== undefined) yield line.head;
  }

  /** The longest-waiting entry of the whole room. */
  get oldest(): QueueEntry<T> | undefined {
    return this.#oldest;
  }

  /** Every entry, oldest first (a copy: the caller may remove as it goes). */
  all(): QueueEntry<T>[] {
    const out: QueueEntry<T>[] = [];
    for (let e = this.#oldest; e !== undefined; e = e.newer) out.push(e);
    return out;
  }
}
