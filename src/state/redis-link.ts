// The Redis store's two connections (commands, and the subscriber for facts and freed slots) and
// whether they are up. Commands fail fast while Redis is away; the store serves from local state and
// comes back when a connection is ready again or a failed command's connection answers a PING.
// Whenever both connections are up after any gap (the first connect included: a replica may start
// before Redis), the channel is subscribed first and then `onLinked` runs, so the store resyncs
// everything it could have missed: the first connect, a reconnect and a subscriber that dropped alone
// are one path.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { defineScripts, type ScriptedRedis } from './redis-scripts.js';

/** Longest a single Redis command may take before the store counts as unreachable. */
const COMMAND_TIMEOUT_MS = 1_000;
/** After a failed command on a live connection, how soon to check whether Redis answers again. */
const RECOVER_CHECK_MS = 500;

export interface RedisLinkOptions {
  readonly url: string;
  readonly channel: string;
  readonly logger: Logger;
  /** A message on the channel. */
  readonly onMessage: (text: string) => void;
  /** Both connections are up after a gap, the channel subscribed: resync. */
  readonly onLinked: () => Promise<void>;
}

export class RedisLink {
  /** The command connection, scripts registered. */
  readonly cmd: ScriptedRedis;
  readonly #sub: Redis;
  readonly #o: RedisLinkOptions;
  #cmdUp = false;
  #subUp = false;
  /** Something may have been missed since the last resync (true before the first one). */
  #gap = true;
  #everLinked = false;
  #subscribing: Promise<void> | undefined;
  #resyncing: Promise<void> | undefined;
  #recoverTimer: NodeJS.Timeout | undefined;
  #downLogged = false;
  #closing = false;

  constructor(o: RedisLinkOptions) {
    this.#o = o;
    const options = {
      lazyConnect: true,
      // Fail fast while Redis is away: a request must never wait on it.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (times: number) => Math.min(100 * times, 2_000),
    };
    // Commands issued in one tick (a take, two releases, a report) go out in one write.
    this.cmd = defineScripts(new Redis(o.url, { ...options, enableAutoPipelining: true }));
    // ioredis resubscribes only channels it had subscribed on an earlier connection, and says nothing
    // of what was published meanwhile: the link subscribes on every 'ready' itself, then resyncs.
    this.#sub = new Redis(o.url, { ...options, autoResubscribe: false });
    this.cmd.on('ready', () => this.#cmdReady());
    this.cmd.on('close', () => this.failed());
    this.cmd.on('error', () => this.failed());
    this.#sub.on('ready', () => this.#subscribe());
    this.#sub.on('close', () => this.#subLost());
    this.#sub.on('error', () => {
      // Said through the command connection; 'close' follows and the subscriber reconnects by itself.
    });
    this.#sub.on('message', (_channel: string, text: string) => o.onMessage(text));
  }

  /** The command connection answers: requests are confirmed by Redis. */
  get healthy(): boolean {
    return this.#cmdUp;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /**
   * Connects both; resolves once the first resync ran, or at once when Redis is down (the store then
   * starts degraded, and resyncs when Redis answers).
   */
  async connect(): Promise<void> {
    await Promise.all([this.cmd.connect().catch(() => undefined), this.#sub.connect().catch(() => undefined)]);
    await this.#subscribing;
    await this.#resyncing;
  }

  /** A command failed or the command connection closed: local state serves until Redis answers again. */
  failed(): void {
    this.#cmdUp = false;
    this.#gap = true;
    if (!this.#closing && this.#recoverTimer === undefined) {
      this.#recoverTimer = setTimeout(() => void this.#tryRecover(), RECOVER_CHECK_MS);
      this.#recoverTimer.unref();
    }
    // 'error' repeats on every reconnect attempt: say it once per outage.
    if (this.#closing || this.#downLogged) return;
    this.#downLogged = true;
    this.#o.logger.warn('redis unreachable; serving from local state until it returns');
  }

  /** No more recovery: the store is leaving (its last commands may still go out). */
  stop(): void {
    this.#closing = true;
    clearTimeout(this.#recoverTimer);
  }

  disconnect(): void {
    this.stop();
    this.cmd.disconnect();
    this.#sub.disconnect();
  }

  #cmdReady(): void {
    if (this.#cmdUp) return;
    this.#cmdUp = true;
    this.#downLogged = false;
    this.#check();
  }

  #subscribe(): void {
    this.#subscribing = this.#sub.subscribe(this.#o.channel).then(
      () => {
        this.#subUp = true;
        this.#check();
      },
      () => {
        // The connection dropped again; the next 'ready' subscribes.
      },
    );
  }

  #subLost(): void {
    if (this.#closing) return;
    if (this.#subUp && this.#cmdUp) this.#o.logger.warn('redis subscription lost; resyncing when it returns');
    this.#subUp = false;
    this.#gap = true;
  }

  /** Resyncs when both connections are up after a gap. */
  #check(): void {
    if (!this.#cmdUp || !this.#subUp || !this.#gap || this.#closing) return;
    this.#gap = false;
    if (this.#everLinked) this.#o.logger.warn('redis is back; resyncing pool state');
    else this.#o.logger.info('redis connected');
    this.#everLinked = true;
    this.#resyncing = this.#o.onLinked().catch(() => undefined);
  }

  /**
   * A failed command does not always close the connection (a timeout, a script error): check back, and
   * count Redis as back once it answers. A closed connection comes back through 'ready' instead.
   */
  async #tryRecover(): Promise<void> {
    this.#recoverTimer = undefined;
    if (this.#closing || this.#cmdUp || this.cmd.status !== 'ready') return;
    try {
      await this.cmd.ping();
      this.#cmdReady();
    } catch {
      this.failed();
    }
  }
}
