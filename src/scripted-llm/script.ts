import { readFile } from 'node:fs/promises';
import { z } from 'zod';

const toolCallSchema = z.strictObject({
  name: z.string().min(1),
  /** An object is sent as JSON; a string is sent verbatim (to script malformed arguments). */
  arguments: z.union([z.record(z.string(), z.unknown()), z.string()]),
});

const turnSchema = z.strictObject({
  text: z.string().optional(),
  reasoning: z.string().optional(),
  tool_calls: z.array(toolCallSchema).optional(),
  finish_reason: z.enum(['stop', 'length', 'tool_calls']).optional(),
  /** Answer this turn with an HTTP error instead of a completion. */
  error: z.strictObject({ status: z.number().int().min(400).max(599), message: z.string().optional() }).optional(),
  /** Send a broken SSE stream for this turn. */
  malformed: z.boolean().optional(),
  /** Wait this long before the first byte. */
  delay_ms: z.number().int().min(0).optional(),
  /** Wait this long between streamed chunks. */
  chunk_delay_ms: z.number().int().min(0).optional(),
});

export const scriptSchema = z.strictObject({
  description: z.string().optional(),
  /** The answer to requests without tools (opencode's session-title request). */
  title: z.string().default('Scripted session'),
  turns: z.array(turnSchema).min(1),
  /** Answer every request with this HTTP error: an endpoint that is down. */
  error: z.strictObject({ status: z.number().int().min(400).max(599), message: z.string().optional() }).optional(),
  /** Answer 400 to requests carrying any of these body fields, as OpenAI does for vLLM-only parameters. */
  reject_fields: z.array(z.string()).optional(),
});

export type ScriptedTurn = z.infer<typeof turnSchema>;
export type Script = z.infer<typeof scriptSchema>;

export async function loadScript(file: string): Promise<Script> {
  const parsed = scriptSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
  if (!parsed.success) {
    throw new Error(`invalid script ${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

interface ChatMessage {
  role: string;
  content?: unknown;
}

/**
 * Which scripted turn answers a request: the number of assistant messages already in the conversation.
 * Stateless, so retries repeat the same turn and concurrent rollouts each follow the script.
 * Past the end, the agent is told it is done.
 */
export function turnFor(script: Script, messages: ChatMessage[]): ScriptedTurn {
  const index = messages.filter((m) => m.role === 'assistant').length;
  return script.turns[index] ?? { text: 'Done.', finish_reason: 'stop' };
}

/** Values the script can refer to as {{name}}, read from the conversation (opencode's <env> block). */
export function placeholdersFrom(messages: ChatMessage[]): Record<string, string> {
  const system = messages.find((m) => m.role === 'system');
  const text = typeof system?.content === 'string' ? system.content : JSON.stringify(system?.content ?? '');
  const workdir = /Working directory: (.+)/.exec(text)?.[1]?.trim();
  return workdir ? { workdir } : {};
}

export function fillPlaceholders<T>(value: T, values: Record<string, string>): T {
  if (typeof value === 'string') return value.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => values[name] ?? whole) as T;
  if (Array.isArray(value)) return value.map((v) => fillPlaceholders(v, values)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillPlaceholders(v, values)])) as T;
  }
  return value;
}
