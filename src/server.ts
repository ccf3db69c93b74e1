import { readFileSync } from 'node:fs';
import path from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { packageRoot } from './paths.js';
import { registerTools } from './tools/index.js';
import type { ToolServices } from './tools/define-tool.js';

export const packageVersion: string = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

const INSTRUCTIONS =
  'opencode-env runs Python in an isolated sandbox with a persistent interpreter (execute_python), ' +
  'and reports or resets the episode (get_state, reset). State persists between calls until reset.';

/** One MCP server per connection, bound to that connection's episode. Knows no transport. */
export function createMcpServer(services: ToolServices): McpServer {
  const server = new McpServer(
    { name: 'opencode-env', title: 'opencode-env', version: packageVersion },
    { capabilities: { logging: {} }, instructions: INSTRUCTIONS },
  );
  registerTools(server, services);
  return server;
}
