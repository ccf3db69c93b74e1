import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { TraceStore } from '../core/traces.js';
import type { SessionServices } from '../tools/tool.js';
import { packageVersion } from '../version.js';
import { registerTraceResources } from './trace-resources.js';
import { serveTools } from './tools.js';

const INSTRUCTIONS =
  'opencode-env runs coding-agent rollouts (run_rollout: the OpenCode agent solves a task in a fresh sandbox against an ' +
  'OpenAI-compatible model, a verifier scores it, every LLM turn is recorded) and Python in an isolated sandbox with a ' +
  'persistent interpreter (execute_python). get_state reports the episode, reset starts a new one. ' +
  "Each rollout's full trace is a resource under opencode-env://traces/.";

/**
 * One MCP server per session, bound to that session's episode. Knows no transport. Advertises only what
 * it does: tools (a fixed list), trace resources (whose list changes after each rollout), and logging
 * (each call's progress at info, filtered by logging/setLevel).
 */
export function createMcpServer(services: SessionServices, traces: TraceStore): McpServer {
  const server = new McpServer(
    { name: 'opencode-env', title: 'opencode-env', version: packageVersion },
    { capabilities: { logging: {} }, instructions: INSTRUCTIONS },
  );
  serveTools(server.server, services);
  registerTraceResources(server, traces);
  const unsubscribe = traces.onStored(() => {
    if (server.isConnected()) server.sendResourceListChanged();
  });
  const previousOnClose = server.server.onclose;
  server.server.onclose = () => {
    unsubscribe();
    previousOnClose?.();
  };
  return server;
}
