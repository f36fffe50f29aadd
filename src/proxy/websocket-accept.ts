// Completes the client's handshake once the upstream's is open: a ws server (no HTTP server of its own)
// that answers 101 with the subprotocol the upstream chose and the headers to pass on, per request.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { CLOSE_TIMEOUT_MS, type CloseTimeout } from './websocket-handshake.js';

/** What the client's 101 carries besides what ws writes. */
export interface Acceptance {
  /** The subprotocol the upstream chose ('' for none). */
  readonly protocol: string;
  /** Header lines to add (websocket-response.ts). */
  readonly lines: readonly string[];
}

export class ClientAcceptor {
  readonly #wss: WebSocketServer;
  /** Per client handshake being completed. */
  readonly #answers = new WeakMap<IncomingMessage, Acceptance>();

  constructor(maxMessageBytes: number) {
    const serverOptions: WebSocket.ServerOptions & CloseTimeout = {
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      autoPong: false,
      maxPayload: maxMessageBytes,
      closeTimeout: CLOSE_TIMEOUT_MS,
      // The client gets the subprotocol the upstream chose, or none (only ever one the client offered).
      handleProtocols: (offered, req) => {
        const chosen = this.#answers.get(req)?.protocol ?? '';
        return chosen !== '' && offered.has(chosen) ? chosen : false;
      },
    };
    this.#wss = new WebSocketServer(serverOptions);
    this.#wss.on('headers', (lines, req) => {
      const extra = this.#answers.get(req)?.lines;
      if (extra !== undefined) lines.push(...extra);
    });
  }

  /**
   * Answers the client's handshake with 101; the client's socket, or undefined when ws destroyed one the
   * client had already half-closed. ws completes the upgrade synchronously.
   */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, answer: Acceptance): WebSocket | undefined {
    this.#answers.set(req, answer);
    let client: WebSocket | undefined;
    try {
      this.#wss.handleUpgrade(req, socket, head, (ws) => (client = ws));
    } finally {
      this.#answers.delete(req);
    }
    return client;
  }
}
