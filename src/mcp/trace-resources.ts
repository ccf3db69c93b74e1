import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { MAX_ANSWER_BYTES, parseTraceUri, TRACE_URI_PREFIX, traceUri, type TraceStore } from '../core/traces.js';

/** MCP's "resource not found" code (the SDK's ErrorCode has no member for it). */
const RESOURCE_NOT_FOUND = -32002;
const LISTED_TRACES = 500;
const MIB = 1024 * 1024;

const DESCRIPTION =
  'The full record of one run_rollout: parameters, result, and every LLM call with its request, response, token ids and logprobs. ' +
  `No answer is over ${MAX_ANSWER_BYTES / MIB} MiB. ${TRACE_URI_PREFIX}<rollout_id> is the whole trace ` +
  '({version, rollout_id, created_at, finished_at, spec, result, turns}) when it fits; when it does not, turns holds a summary ' +
  'of each turn with the uri of the full turn (<trace uri>/turns/<n>, n from 1) and a note says so. A document still too large ' +
  '(one huge turn) is answered with {bytes, parts, note}: read each URI in parts (<document uri>/part/<k>, k from 0) and ' +
  'concatenate their text to get its JSON. A rollout interrupted by the server stopping has result.error_kind "interrupted".';

/**
 * Every stored rollout trace as a resource: listed newest first, read by URI. One template covers the trace,
 * its turns and their parts, so that every other URI under the prefix (junk, traversal, overlong ids) gets
 * the same clean not-found error from one parser.
 */
export function registerTraceResources(server: McpServer, traces: TraceStore): void {
  server.registerResource(
    'rollout-trace',
    new ResourceTemplate(`${TRACE_URI_PREFIX}{+path}`, {
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
        path: async (prefix) => (await traces.list(LISTED_TRACES)).map((t) => t.rollout_id).filter((id) => id.startsWith(prefix)),
      },
    }),
    { title: 'Rollout trace', description: DESCRIPTION, mimeType: 'application/json' },
    async (uri) => {
      const ref = parseTraceUri(uri.href);
      const content = ref ? await traces.readResource(ref) : null;
      if (!content)
        throw new McpError(RESOURCE_NOT_FOUND, `Resource not found: ${uri.href.slice(0, 300)}`, { uri: uri.href.slice(0, 300) });
      return { contents: [{ uri: uri.href, mimeType: content.mimeType, text: content.text }] };
    },
  );
}
