// @ts-check
// Starts Portkey's gateway (its build/start-server.js, given as the first argument) on the port given
// as the second, bound to 127.0.0.1: @hono/node-server calls listen(port, undefined, cb), which would
// listen on every interface. Prints `listening http://127.0.0.1:PORT` for the bench once it listens.
// Any outgoing TCP connection to a host other than loopback is refused, so the gateway can reach
// nothing but the fake upstream. The gateway's code runs unchanged otherwise.
import { Server, Socket } from 'node:net';
import { pathToFileURL } from 'node:url';

const [entry, port] = process.argv.slice(2);
if (!entry || !port) throw new Error('usage: portkey-launch.mjs <start-server.js> <port>');

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);
const connect = Socket.prototype.connect;
/** @type {any} */ (Socket.prototype).connect = function (/** @type {any[]} */ ...args) {
  // net.connect() hands its normalised [options, cb] array to Socket#connect.
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  const isPath = typeof first === 'object' && first !== null && typeof first.path === 'string';
  const host = typeof first === 'object' && first !== null ? (first.host ?? 'localhost') : typeof args[1] === 'string' ? args[1] : 'localhost';
  if (!isPath && !LOOPBACK.has(host)) {
    process.stderr.write(`portkey-launch: refused a connection to ${host}: the bench talks only to 127.0.0.1\n`);
    throw new Error(`portkey-launch: connections to ${host} are refused in the bench`);
  }
  return connect.apply(this, /** @type {any} */ (args));
};

const listen = Server.prototype.listen;
let announced = false;
/** @type {any} */ (Server.prototype).listen = function (/** @type {any[]} */ ...args) {
  if (typeof args[0] === 'number' && (args[1] === undefined || typeof args[1] === 'function')) {
    if (args[1] === undefined) args.splice(1, 1);
    args.splice(1, 0, '127.0.0.1');
  }
  this.once('listening', () => {
    if (announced) return;
    announced = true;
    const addr = this.address();
    process.stdout.write(`\nlistening http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : port}\n`);
  });
  return listen.apply(this, /** @type {any} */ (args));
};

// The gateway reads its flags from process.argv: --port=N, and --headless (no web UI, no log stream).
process.argv = [process.argv[0], entry, `--port=${port}`, '--headless'];
await import(pathToFileURL(entry).href);
