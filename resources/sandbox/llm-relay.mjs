// The in-sandbox end of an LLM channel carried over a command's stdin and stdout, for sandboxes with no network
// route to the server (a remote backend such as E2B). It listens on 127.0.0.1 inside the sandbox and carries every
// connection made to it, byte for byte, to the server as line frames on stdout; the server's answers come back as
// line frames on stdin.
//
//   node llm-relay.mjs [--port N] [-- <command> [args...]]
//
// Frames are one line each: `<kind> <connection id> <base64 payload>`:
//   sandbox -> server  P 0 <port>      listening (the first line)
//                      O <id>          a connection was opened
//                      D <id> <bytes>  data from the connection
//                      E <id>          the connection ended its side
//   server -> sandbox  D <id> <bytes>  data for the connection
//                      E <id>          the server ended its side
//                      X <id>          the server dropped the connection
//   both ways          X <id>          the connection was destroyed
//   sandbox -> server  S 0 <bytes>     the command's stdout (with a command only)
// With a command, it runs the command once listening (its stdout as S frames, its stderr as this process's),
// replacing the port placeholder __OPENCODE_ENV_LLM_PORT__ in its arguments and environment, and exits with the
// command's status.
import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';

const PLACEHOLDER = '__OPENCODE_ENV_LLM_PORT__';
const args = process.argv.slice(2);
const separator = args.indexOf('--');
const own = separator === -1 ? args : args.slice(0, separator);
const command = separator === -1 ? [] : args.slice(separator + 1);
const portIndex = own.indexOf('--port');
const requestedPort = portIndex === -1 ? 0 : Number(own[portIndex + 1]);

const sockets = new Map();
let nextId = 1;
const send = (kind, id, payload) => process.stdout.write(`${kind} ${id}${payload === undefined ? '' : ` ${payload}`}\n`);

const server = net.createServer((socket) => {
  // Answers arrive in pieces (headers, then each batch of tokens): without this, Nagle's algorithm and the client's
  // delayed ACK hold a small piece back for 40 ms.
  socket.setNoDelay(true);
  const id = nextId++;
  sockets.set(id, socket);
  send('O', id);
  socket.on('data', (chunk) => send('D', id, chunk.toString('base64')));
  socket.on('end', () => send('E', id));
  socket.on('close', () => {
    if (sockets.delete(id)) send('X', id);
  });
  socket.on('error', () => socket.destroy());
});

let pending = '';
process.stdin.on('data', (chunk) => {
  pending += chunk.toString('latin1');
  let newline;
  while ((newline = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, newline);
    pending = pending.slice(newline + 1);
    const [kind, idText, payload] = line.split(' ');
    const socket = sockets.get(Number(idText));
    if (!socket) continue;
    if (kind === 'D' && payload) socket.write(Buffer.from(payload, 'base64'));
    else if (kind === 'E') socket.end();
    else if (kind === 'X') {
      sockets.delete(Number(idText));
      socket.destroy();
    }
  }
});
// The server is gone: nothing more can be relayed.
process.stdin.on('end', () => process.exit(command.length > 0 ? 1 : 0));

server.listen(requestedPort, '127.0.0.1', () => {
  const port = String(server.address().port);
  send('P', 0, port);
  if (command.length === 0) return;
  const fill = (value) => value?.split(PLACEHOLDER).join(port);
  const env = Object.fromEntries(Object.entries(process.env).map(([key, value]) => [key, fill(value)]));
  const child = spawn(command[0], command.slice(1).map(fill), { stdio: ['ignore', 'pipe', 'inherit'], env });
  child.stdout.on('data', (chunk) => send('S', 0, chunk.toString('base64')));
  child.on('error', (error) => {
    process.stderr.write(`llm-relay: cannot run ${command[0]}: ${error.message}\n`);
    process.exit(127);
  });
  // 'close', not 'exit': the command's last stdout must be framed before this process ends.
  child.on('close', (code, signal) => process.exit(signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 1)));
});
