import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerTool, type ToolServices } from './define-tool.js';
import { executePythonTool } from './execute-python.js';
import { getStateTool } from './get-state.js';
import { resetTool } from './reset.js';
import { runRolloutTool } from './run-rollout.js';

/** Every tool the server offers, registered in one place. */
export function registerTools(server: McpServer, services: ToolServices): void {
  registerTool(server, runRolloutTool, services);
  registerTool(server, executePythonTool, services);
  registerTool(server, resetTool, services);
  registerTool(server, getStateTool, services);
}
