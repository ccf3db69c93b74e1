import { readFileSync } from 'node:fs';
import path from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { packageRoot } from './paths.js';
import type { TraceStore } from './core/traces.js';
import { registerTraceResources } from './resources/traces.js';
import type { ToolServices } from './tools/define-tool.js';
import { registerTools } from './tools/index.js';

export const packageVersion: string = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

const INSTRUCTIONS =
  'opencode-env runs coding-agent rollouts (run_rollout: the OpenCode agent solves a task in a fresh sandbox against an ' +
  'OpenAI-compatible model, a verifier scores it, every LLM turn is recorded) and Python in an isolated sandbox with a ' +
  'persistent interpreter (execute_python). get_state reports the episode, reset starts a new one. ' +
  'Each rollout\'s full trace is a resource under opencode-env://traces/.';

/** One MCP server per connection, bound to that connection's episode. Knows no transport. */
export function createMcpServer(services: ToolServices & { traces: TraceStore }): McpServer {
  const server = new McpServer(
    { name: 'opencode-env', title: 'opencode-env', version: packageVersion },
    { capabilities: { logging: {} }, instructions: INSTRUCTIONS },
  );
  registerTools(server, services);
  registerTraceResources(server, services.traces);
  const unsubscribe = services.rollouts.onTraceStored(() => {
    if (server.isConnected()) server.sendResourceListChanged();
  });
  const previousOnClose = server.server.onclose;
  server.server.onclose = () => {
    unsubscribe();
    previousOnClose?.();
  };
  return server;
}
