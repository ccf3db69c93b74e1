import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { createMcpServer } from '../mcp/server.js';
import type { Runtime } from '../runtime.js';
import { openSession } from '../session.js';

/** Largest single JSON-RPC message accepted on stdin (the SDK default of 10 MiB closes the connection). */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Serves one MCP client over stdin/stdout until it goes away; then the process ends. */
export async function serveStdio(runtime: Runtime): Promise<void> {
  const { logger, lifecycle } = runtime;
  // stdout carries only protocol messages: anything printed by accident goes to stderr instead.
  console.log = console.error;
  console.info = console.error;
  console.warn = console.error;
  console.debug = console.error;

  const session = openSession(runtime);
  const server = createMcpServer(session.services, runtime.traces);
  const transport = new StdioServerTransport(process.stdin, process.stdout, { maxBufferSize: MAX_MESSAGE_BYTES });
  session.scope.onShutdown('mcp server', () => server.close());

  // One connection is the whole life of a stdio server.
  transport.onclose = () => void lifecycle.shutdown('transport closed');
  process.stdin.once('end', () => void lifecycle.shutdown('client closed stdin'));
  process.stdin.once('close', () => void lifecycle.shutdown('stdin closed'));
  process.stdout.on('error', (error) => void lifecycle.shutdown(`stdout failed: ${error.message}`));

  // Once the handshake is done, not before: a host is waiting for the answer to `initialize`.
  server.server.oninitialized = () => setImmediate(() => runtime.checkRolloutPrerequisites());
  await server.connect(transport);
  logger.debug('serving MCP on stdio');
}
