// Where request hygiene meets the server: an onRequest hook for every route (and for the 404 handler),
// the router's refusals, and the answer on the raw socket to what never becomes a request (parse errors,
// oversized header blocks, unknown methods, CONNECT). The rules themselves are in request-target.ts.
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ConnectionError, FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { KeypoolError } from '../errors.js';
import { MAX_REQUEST_HEADERS, methodError, vetRequest } from './request-target.js';

/**
 * Sets the server up: keep one header field more than the limit (so the count, not node's silent drop,
 * decides), refuse what the hook finds, answer CONNECT instead of dropping it.
 */
export function installHygiene(app: FastifyInstance): void {
  app.server.maxHeadersCount = MAX_REQUEST_HEADERS + 1;
  app.server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    app.log.info({ method: req.method, status: 405, error: 'keypool_method_not_allowed' }, 'request');
    answerOnSocket(socket, methodError('CONNECT')!);
  });
  app.addHook('onRequest', (request, reply, done) => {
    const raw = request.raw;
    const error = vetRequest(request.method, raw.url ?? '/', raw.rawHeaders.length / 2, request.headers.host);
    if (error === undefined) {
      done();
      return;
    }
    request.log.info({ method: request.method, path: logPath(raw.url), status: error.status, error: error.code }, 'request');
    // A reply sent from a callback hook ends the request there: `done` must not be called too.
    void reply.code(error.status).headers(error.headers).send(error.toBody());
  });
}

/**
 * Fastify's `frameworkErrors`: the router could not take the URL (a percent-encoding that does not decode,
 * such as `%c0%ae` or `%u002e`). Fastify's own answer is not OpenAI-shaped and quotes the URL back.
 */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const answer =
    error.code === 'FST_ERR_BAD_URL'
      ? new KeypoolError('keypool_invalid_path', 'The path is not valid percent-encoded UTF-8.', { cause: error })
      : new KeypoolError('keypool_internal_error', 'Internal error in keypool.', { cause: error });
  request.log.info({ method: request.method, status: answer.status, error: answer.code, cause: error.code }, 'request');
  void reply.code(answer.status).send(answer.toBody());
}

/** Longest path logged for a refused request: enough to see what it was, not a 16 KiB log line. */
const MAX_LOGGED_PATH = 256;

function logPath(url: string | undefined): string {
  const path = (url ?? '/').split('?', 1)[0]!;
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path;
}

/** Fastify's `clientErrorHandler`: node could not read a request off the socket. */
export function clientErrorHandler(logger: FastifyBaseLogger): (err: ConnectionError, socket: Duplex) => void {
  return (err, socket) => {
    // A reset socket has nobody to answer (https://nodejs.org/api/http.html#event-clienterror).
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const error = clientError(err.code);
    logger.debug({ status: error.status, error: error.code, cause: err.code }, 'unreadable request');
    answerOnSocket(socket, error);
  };
}

/** The answer to a node parser error code (llhttp's `HPE_*`, node's `ERR_HTTP_REQUEST_TIMEOUT`). */
export function clientError(code: string | undefined): KeypoolError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new KeypoolError('keypool_headers_too_large', 'The request header block is larger than the server accepts (16 KiB).');
    case 'HPE_INVALID_METHOD':
      // A token llhttp does not know: certainly not one keypool forwards.
      return methodError('')!;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new KeypoolError('keypool_request_timeout', 'The request was not received in time.');
    default:
      return new KeypoolError('keypool_invalid_request', 'The request could not be parsed as HTTP/1.1.');
  }
}

/** The whole HTTP response for a socket nobody else will answer; the connection closes after it. */
export function rawResponse(error: KeypoolError): string {
  const body = JSON.stringify(error.toBody());
  let head = `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n`;
  for (const [name, value] of Object.entries(error.headers)) head += `${name}: ${value}\r\n`;
  return `${head}\r\n${body}`;
}

function answerOnSocket(socket: Duplex, error: KeypoolError): void {
  // node takes its own error listener off a socket it hands over (CONNECT): a reset must not crash us.
  socket.on('error', () => socket.destroy());
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  // Destroyed once flushed: a client that never closes its side does not keep the socket.
  socket.end(rawResponse(error), () => socket.destroy());
}
