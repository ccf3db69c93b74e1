import { z } from 'zod';

/**
 * The web UI's own WebSocket protocol at /web/socket: one session (one episode) per browser tab, tool calls in, progress and
 * results out. Deliberately smaller than MCP or OpenEnv: the page is its only client. Written once here; the page
 * (resources/web/connection.js) speaks exactly these shapes.
 */

const callId = z.union([z.string().min(1).max(100), z.number().int()]);

export const webClientFrameSchema = z.discriminatedUnion('type', [
  /** Runs a tool in the tab's session. */
  z.object({
    type: z.literal('call'),
    id: callId,
    tool: z.string().min(1).max(100),
    arguments: z.record(z.string(), z.unknown()).optional(),
  }),
  /** Cancels a running call (a rollout then stops and stores its trace as cancelled). */
  z.object({ type: z.literal('cancel'), id: callId }),
]);

const errorShape = z.object({ class: z.string(), kind: z.string().nullable(), message: z.string() });

export const webServerFrameSchema = z.union([
  /** The first frame: the session is open. */
  z.object({ type: z.literal('ready'), session_id: z.string(), tools: z.array(z.string()) }),
  z.object({ type: z.literal('progress'), id: callId, message: z.string() }),
  z.object({ type: z.literal('result'), id: callId, ok: z.literal(true), value: z.unknown() }),
  z.object({ type: z.literal('result'), id: callId, ok: z.literal(false), error: errorShape }),
  /**
   * Not about one call: a frame that could not be read (`bad_frame`), no free session (`capacity`, then the socket closes),
   * or the session ended under the page (`session_closed`, e.g. reaped when idle).
   */
  z.object({ type: z.literal('error'), code: z.enum(['bad_frame', 'capacity', 'session_closed']), message: z.string() }),
]);
export type WebServerFrame = z.infer<typeof webServerFrameSchema>;
