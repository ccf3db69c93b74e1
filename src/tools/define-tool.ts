import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult, ServerNotification, ServerRequest, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { z } from 'zod';
import type { Episode } from '../core/episode.js';
import type { RolloutRunner } from '../core/rollout/run.js';
import type { Logger } from '../log.js';

/** What a tool handler may use: the connection's episode and the call's cancellation and progress hooks. */
export interface ToolContext {
  episode: Episode;
  rollouts: RolloutRunner;
  logger: Logger;
  /** Aborted when the client cancels the call or disconnects. */
  signal: AbortSignal;
  /** Sends a progress notification when the client asked for them; otherwise does nothing. */
  reportProgress(progress: number, message?: string, total?: number): Promise<void>;
}

/** Thrown by handlers for problems the caller can fix; reported as a tool error with this message. */
export class ToolInputError extends Error {}

export interface ToolDefinition<Input extends z.ZodObject, Output extends z.ZodObject> {
  name: string;
  title: string;
  description: string;
  inputSchema: Input;
  outputSchema: Output;
  annotations: ToolAnnotations;
  handler(args: z.infer<Input>, context: ToolContext): Promise<z.infer<Output>>;
}

export function defineTool<Input extends z.ZodObject, Output extends z.ZodObject>(
  definition: ToolDefinition<Input, Output>,
): ToolDefinition<Input, Output> {
  return definition;
}

export interface ToolServices {
  episode: Episode;
  rollouts: RolloutRunner;
  logger: Logger;
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

function progressReporter(extra: Extra): ToolContext['reportProgress'] {
  const token = extra._meta?.progressToken;
  if (token === undefined) return async () => {};
  return async (progress, message, total) => {
    await extra
      .sendNotification({
        method: 'notifications/progress',
        params: { progressToken: token, progress, ...(total !== undefined ? { total } : {}), ...(message ? { message } : {}) },
      })
      .catch(() => undefined);
  };
}

/**
 * Registers a tool whose result is the structured output plus the same JSON as text, for clients
 * (and OpenEnv's Python client) that only read text content.
 */
export function registerTool<Input extends z.ZodObject, Output extends z.ZodObject>(
  server: McpServer,
  tool: ToolDefinition<Input, Output>,
  services: ToolServices,
): void {
  server.registerTool(
    tool.name,
    {
      title: tool.title,
      description: tool.description,
      inputSchema: tool.inputSchema,
      outputSchema: tool.outputSchema,
      annotations: tool.annotations,
    },
    // The SDK infers handler types from the schema generics; this wrapper is typed by ToolDefinition instead.
    (async (args: z.infer<Input>, extra: Extra): Promise<CallToolResult> => {
      const log = services.logger.child({ tool: tool.name, request: extra.requestId });
      try {
        const output = await tool.handler(args, {
          episode: services.episode,
          rollouts: services.rollouts,
          logger: log,
          signal: extra.signal,
          reportProgress: progressReporter(extra),
        });
        return {
          content: [{ type: 'text', text: JSON.stringify(output) }],
          structuredContent: output as Record<string, unknown>,
        };
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (!(error instanceof ToolInputError)) log.error({ err: error }, 'tool failed');
        return { isError: true, content: [{ type: 'text', text: `${tool.name} failed: ${message}` }] };
      }
    }) as never,
  );
}
