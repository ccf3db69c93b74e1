import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  type CallToolResult,
  type LoggingLevel,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { callTool, type ToolOutcome } from '../tools/call-tool.js';
import { findTool, TOOLS } from '../tools/index.js';
import type { SessionServices, ToolDefinition } from '../tools/tool.js';

/** Level of the MCP log notifications that mirror a call's progress (rollout phases and LLM turns). */
const PROGRESS_LOG_LEVEL: LoggingLevel = 'info';

let listing: Tool[] | null = null;

/** The tools as MCP lists them; built on first use, since converting the schemas is not free and stdio start-up counts. */
export function mcpToolListing(): Tool[] {
  listing ??= TOOLS.map((tool) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: z.toJSONSchema(tool.inputSchema, { target: 'draft-7', io: 'input' }) as Tool['inputSchema'],
    outputSchema: z.toJSONSchema(tool.outputSchema, { target: 'draft-7', io: 'output' }) as Tool['outputSchema'],
    annotations: { title: tool.title, ...tool.hints },
  }));
  return listing;
}

/** MCP's view of an outcome: the structured value plus the same JSON as text, for clients that read only text. */
function toCallToolResult(tool: ToolDefinition, outcome: ToolOutcome): CallToolResult {
  if (outcome.ok) {
    return { content: [{ type: 'text', text: JSON.stringify(outcome.value) }], structuredContent: outcome.value };
  }
  const { error } = outcome;
  const text = error.class === 'invalid_input' ? `${tool.name}: ${error.message}` : `${tool.name} failed: ${error.message}`;
  return { isError: true, content: [{ type: 'text', text }] };
}

/**
 * Serves the tools on a low-level MCP server: one listing from the tools' own schemas, and every call
 * through `callTool`. The tool list never changes, and the capability says so (no listChanged).
 */
export function serveTools(server: Server, services: SessionServices): void {
  server.registerCapabilities({ tools: {} });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: mcpToolListing() }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const tool = findTool(request.params.name);
    if (!tool) return { isError: true, content: [{ type: 'text', text: `Tool ${request.params.name} not found` }] };
    const progressToken = request.params._meta?.progressToken;
    let step = 0;
    const outcome = await callTool(tool, request.params.arguments, services, {
      signal: extra.signal,
      progress: (message) => {
        if (progressToken !== undefined) {
          void extra
            .sendNotification({ method: 'notifications/progress', params: { progressToken, progress: ++step, message } })
            .catch(() => undefined);
        }
        // Also a log notification, which a client filters with logging/setLevel.
        void server
          .sendLoggingMessage({ level: PROGRESS_LOG_LEVEL, logger: tool.name, data: message }, extra.sessionId)
          .catch(() => undefined);
      },
    });
    return toCallToolResult(tool, outcome);
  });
}
