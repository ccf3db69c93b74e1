import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { Episode } from '../core/episode.js';
import type { Runtime } from '../runtime.js';
import { createMcpServer } from '../server.js';

/** Largest single JSON-RPC message accepted on stdin (the SDK default of 10 MiB closes the connection). */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Serves one MCP client over stdin/stdout until it goes away. */
export async function serveStdio(runtime: Runtime): Promise<void> {
  const { logger, lifecycle, provider, rollouts, traces } = runtime;
  // stdout carries only protocol messages: anything printed by accident goes to stderr instead.
  console.log = console.error;
  console.info = console.error;
  console.warn = console.error;
  console.debug = console.error;

  const episode = new Episode({ provider, logger });
  const server = createMcpServer({ episode, logger, rollouts, traces });
  const transport = new StdioServerTransport(process.stdin, process.stdout, { maxBufferSize: MAX_MESSAGE_BYTES });
  lifecycle.onShutdown('episode', () => episode.close());
  lifecycle.onShutdown('mcp server', () => server.close());

  transport.onclose = () => void lifecycle.shutdown('transport closed');
  process.stdin.once('end', () => void lifecycle.shutdown('client closed stdin'));
  process.stdin.once('close', () => void lifecycle.shutdown('stdin closed'));
  process.stdout.on('error', (error) => void lifecycle.shutdown(`stdout failed: ${error.message}`));

  await server.connect(transport);
  logger.debug('serving MCP on stdio');
}
