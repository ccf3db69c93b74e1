import type { z } from 'zod';
import type { Episode } from '../core/episode.js';
import type { RolloutService } from '../core/rollout/run.js';
import type { Logger } from '../log.js';

/** What a session offers its tools: its episode, the shared rollout runner and a logger. */
export interface SessionServices {
  episode: Episode;
  rollouts: RolloutService;
  logger: Logger;
}

/** What one call adds: its cancellation, and where its progress messages go (the transport decides). */
export interface CallContext {
  /** Aborted when the caller cancels the call or goes away. */
  signal: AbortSignal;
  /** Short human-readable progress messages (phases, LLM turns). */
  progress: (message: string) => void;
}

/** A handler sees the session's services (with a logger bound to the tool) and the call's context. */
type ToolContext = SessionServices & CallContext;

/** Hints about a tool's behaviour, as MCP defines them (readOnlyHint and so on). */
interface ToolHints {
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
  openWorldHint?: boolean;
}

/** A tool, independent of any transport: its schemas are the single source of its wire shapes. */
export interface ToolDefinition<Input extends z.ZodType = z.ZodType, Output extends z.ZodObject = z.ZodObject> {
  name: string;
  title: string;
  description: string;
  inputSchema: Input;
  outputSchema: Output;
  hints: ToolHints;
  handler(args: z.output<Input>, context: ToolContext): Promise<z.infer<Output>>;
}

export function defineTool<Input extends z.ZodType, Output extends z.ZodObject>(
  definition: ToolDefinition<Input, Output>,
): ToolDefinition<Input, Output> {
  return definition;
}
