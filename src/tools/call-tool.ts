import type { z } from 'zod';
import { classifyError, InvalidInputError, type ClassifiedError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CallContext, SessionServices, ToolDefinition } from './tool.js';

export type ToolOutcome<Output = Record<string, unknown>> = { ok: true; value: Output } | { ok: false; error: ClassifiedError };

/** Names each problem with the field it is about, as a caller needs to fix it. */
function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(arguments)'}: ${issue.message}`).join('; ');
}

/** Each session logger's child per tool, made once: a call should not build a logger (it is on every call's path). */
const toolLoggers = new WeakMap<Logger, Map<string, Logger>>();

function toolLogger(logger: Logger, tool: string): Logger {
  let byTool = toolLoggers.get(logger);
  if (!byTool) toolLoggers.set(logger, (byTool = new Map()));
  let child = byTool.get(tool);
  if (!child) byTool.set(tool, (child = logger.child({ tool })));
  return child;
}

/**
 * The one way to call a tool, whatever the transport: parse the arguments with the tool's schema, run
 * it, and classify any failure. Transports only map the outcome to their wire format.
 */
export async function callTool<Input extends z.ZodType, Output extends z.ZodObject>(
  tool: ToolDefinition<Input, Output>,
  rawArgs: unknown,
  services: SessionServices,
  call: CallContext,
): Promise<ToolOutcome<z.infer<Output>>> {
  const log = toolLogger(services.logger, tool.name);
  try {
    const parsed = tool.inputSchema.safeParse(rawArgs ?? {});
    if (!parsed.success) throw new InvalidInputError(`invalid arguments: ${describeIssues(parsed.error.issues)}`);
    return { ok: true, value: await tool.handler(parsed.data, { ...services, ...call, logger: log }) };
  } catch (error) {
    const classified = classifyError(error);
    if (classified.class === 'invalid_input') log.debug({ problem: classified.message }, 'rejected a call');
    else log.error({ err: error, class: classified.class }, 'tool failed');
    return { ok: false, error: classified };
  }
}
