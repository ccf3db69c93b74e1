import { executePythonTool } from './execute-python.js';
import { getStateTool } from './get-state.js';
import { resetTool } from './reset.js';
import { runRolloutTool } from './run-rollout.js';
import type { ToolDefinition } from './tool.js';

/** Every tool the server offers, in the order they are listed. */
export const TOOLS: readonly ToolDefinition[] = [runRolloutTool, executePythonTool, resetTool, getStateTool];

export function findTool(name: string): ToolDefinition | undefined {
  return TOOLS.find((tool) => tool.name === name);
}
