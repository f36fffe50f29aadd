// A real redis-server for tests, on a free loopback port, with no persistence. When redis-server is not
// installed the Redis tests are skipped with a notice, unless KEYPOOL_REQUIRE_REDIS=1 (CI) makes that an error.
// A TCP relay (startRelay) stands between a store and Redis where a test needs to break the network.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';

export const REDIS_BIN = 'redis-server';

export function redisAvailable(): boolean {
  const found = spawnSync(REDIS_BIN, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!found) {
    if (process.env.KEYPOOL_REQUIRE_REDIS === '1') throw new Error('redis-server is required (KEYPOOL_REQUIRE_REDIS=1) but not installed');
    console.warn('NOTICE: redis-server not found: Redis tests are skipped (apt-get install redis-server to run them)');
  }
  return found;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** Stops it (SIGKILL: a crash, not a shutdown). */
  kill(): Promise<void>;
}

export async function startRedis(port?: number): Promise<TestRedis> {
  const p = port ?? (await freePort());
  const child: ChildProcess = spawn(REDIS_BIN, ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`redis-server exited (${code}): ${out}`));
    });
  });
  return {
    url: `redis://127.0.0.1:${p}`,
    port: p,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** One client connection through a relay. */
export interface RelayLink {
  /** The client sent SUBSCRIBE on it: a store's subscriber connection. */
  readonly subscriber: boolean;
}

/**
 * A TCP relay on loopback in front of a redis-server, to play what a real network does to a replica:
 * Redis that is not there yet (connections refused until `accept`), connections cut one by one, answers
 * that never arrive.
 */
export interface RedisRelay {
  readonly url: string;
  /** Closes every new connection at once (as if nothing listened). */
  refuse(): void;
  accept(): void;
  /** Destroys the open connections `which` picks (all by default). */
  cut(which?: (l: RelayLink) => boolean): void;
  /**
   * Keeps Redis's answers on the open connections `which` picks (all by default) from reaching their
   * clients until `releaseAnswers`; commands still reach Redis. New connections are not held.
   */
  holdAnswers(which?: (l: RelayLink) => boolean): void;
  releaseAnswers(): void;
  /** Keeps SUBSCRIBE commands (and what follows them on their connection) from reaching Redis until `releaseSubscribes`. */
  holdSubscribes(): void;
  releaseSubscribes(): void;
  links(): RelayLink[];
  close(): Promise<void>;
}

export async function startRelay(target: { port: number }, o: { accepting?: boolean } = {}): Promise<RedisRelay> {
  let accepting = o.accepting ?? true;
  let holdingSubscribes = false;
  interface Link extends RelayLink {
    subscriber: boolean;
    readonly client: Socket;
    readonly server: Socket;
    holding: boolean;
    readonly held: Buffer[];
    /** Client data kept back (a held SUBSCRIBE and what came after it). */
    readonly heldIn: Buffer[];
  }
  const links = new Set<Link>();
  const server = createServer((client) => {
    if (!accepting) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, '127.0.0.1');
    const link: Link = { subscriber: false, client, server: upstream, holding: false, held: [], heldIn: [] };
    links.add(link);
    const drop = (): void => {
      links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d: Buffer) => {
      if (!link.subscriber && /subscribe/i.test(d.toString('latin1'))) link.subscriber = true;
      if (link.heldIn.length > 0 || (holdingSubscribes && link.subscriber)) link.heldIn.push(d);
      else upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (link.holding) link.held.push(d);
      else client.write(d);
    });
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  const cut = (which: (l: RelayLink) => boolean = () => true): void => {
    for (const l of [...links]) {
      if (!which(l)) continue;
      links.delete(l);
      l.client.destroy();
      l.server.destroy();
    }
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    refuse: () => void (accepting = false),
    accept: () => void (accepting = true),
    cut,
    holdAnswers: (which = () => true) => {
      for (const l of links) if (which(l)) l.holding = true;
    },
    releaseAnswers: () => {
      for (const l of links) {
        l.holding = false;
        for (const d of l.held.splice(0)) l.client.write(d);
      }
    },
    holdSubscribes: () => void (holdingSubscribes = true),
    releaseSubscribes: () => {
      holdingSubscribes = false;
      for (const l of links) for (const d of l.heldIn.splice(0)) l.server.write(d);
    },
    links: () => [...links],
    close: async () => {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
