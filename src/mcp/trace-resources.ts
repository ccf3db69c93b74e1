import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { TRACE_URI_PREFIX, traceUri, type TraceStore } from '../core/traces.js';

/** MCP's "resource not found" code (the SDK's ErrorCode has no member for it). */
const RESOURCE_NOT_FOUND = -32002;
const LISTED_TRACES = 500;

/** Every stored rollout trace as a resource: listed newest first, read by URI. */
export function registerTraceResources(server: McpServer, traces: TraceStore): void {
  server.registerResource(
    'rollout-trace',
    new ResourceTemplate(`${TRACE_URI_PREFIX}{rollout_id}`, {
      list: async () => ({
        resources: (await traces.list(LISTED_TRACES)).map((trace) => ({
          uri: traceUri(trace.rollout_id),
          name: trace.rollout_id,
          title: `${trace.task_id || 'rollout'} (reward ${trace.reward ?? 'none'})`,
          description: `${trace.created_at}: task ${trace.task_id || '-'}, reward ${trace.reward ?? 'null'}, ${trace.turns} LLM turns${trace.error ? `, error: ${trace.error}` : ''}`,
          mimeType: 'application/json',
        })),
      }),
      complete: {
        rollout_id: async (prefix) => (await traces.list(LISTED_TRACES)).map((t) => t.rollout_id).filter((id) => id.startsWith(prefix)),
      },
    }),
    {
      title: 'Rollout trace',
      description:
        'The full record of one run_rollout: parameters, result, and every LLM call with its request, response, token ids and logprobs.',
      mimeType: 'application/json',
    },
    async (uri, variables) => {
      const rolloutId = String(variables.rollout_id);
      const text = await traces.readText(rolloutId);
      if (text === null) throw new McpError(RESOURCE_NOT_FOUND, `Resource not found: ${uri.href}`, { uri: uri.href });
      return { contents: [{ uri: uri.href, mimeType: 'application/json', text }] };
    },
  );
}
