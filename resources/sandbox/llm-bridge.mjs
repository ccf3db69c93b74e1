// Runs a command inside a sandbox that has no network, giving it an HTTP endpoint on 127.0.0.1 that is
// relayed to a unix socket the host serves into the sandbox (opencode-env's recording proxy).
//
//   node llm-bridge.mjs <unix-socket> <placeholder> -- <command> [args...]
//
// Listens on a free loopback port, replaces <placeholder> with that port in the command's arguments and
// the environment's values (e.g. in OPENCODE_CONFIG_CONTENT), runs the command with this process's
// stdin/stdout/stderr, and exits with the command's status (128 + signal number when it was killed).
import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';

const [socketPath, placeholder, separator, command, ...args] = process.argv.slice(2);
if (!socketPath || !placeholder || separator !== '--' || !command) {
  process.stderr.write('usage: node llm-bridge.mjs <unix-socket> <placeholder> -- <command> [args...]\n');
  process.exit(64);
}

const server = net.createServer((client) => {
  // Answers arrive in pieces (headers, then each batch of tokens): without this, Nagle's algorithm and the client's
  // delayed ACK hold a small piece back for 40 ms.
  client.setNoDelay(true);
  const upstream = net.connect(socketPath);
  client.pipe(upstream);
  upstream.pipe(client);
  const closeBoth = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', closeBoth);
  upstream.on('error', closeBoth);
});
server.listen(0, '127.0.0.1', () => {
  const port = String(server.address().port);
  const fill = (value) => value?.split(placeholder).join(port);
  const env = Object.fromEntries(Object.entries(process.env).map(([key, value]) => [key, fill(value)]));
  const child = spawn(command, args.map(fill), { stdio: 'inherit', env });
  child.on('error', (error) => {
    process.stderr.write(`llm-bridge: cannot run ${command}: ${error.message}\n`);
    process.exit(127);
  });
  child.on('exit', (code, signal) => process.exit(signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 1)));
});
