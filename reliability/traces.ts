import type { Resource } from '@modelcontextprotocol/sdk/types.js';
import type { Server } from './server.js';

export interface StoredTrace {
  resource: Resource;
  text: string;
  /** The parsed JSON, or null when the text is not JSON. */
  json: Record<string, any> | null;
  taskId: string | null;
  errorKind: string | null;
}

/** Reads every resource the server lists, as a standard MCP client would, and picks out task id and error kind. */
async function readTraces(server: Server): Promise<StoredTrace[]> {
  const traces: StoredTrace[] = [];
  for (const resource of await server.listResources()) {
    const read = await server.readResource(resource.uri);
    const text = read.contents.map((c) => ('text' in c && typeof c.text === 'string' ? c.text : '')).join('');
    let json: Record<string, any> | null = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON
    }
    // The trace's shape may change (a summary resource, parts): look where a task id can be.
    const result = json?.result ?? json?.summary ?? json;
    traces.push({
      resource,
      text,
      json,
      taskId: result?.task_id ?? json?.spec?.task_id ?? json?.task_id ?? null,
      errorKind: result?.error_kind ?? json?.error_kind ?? null,
    });
  }
  return traces;
}

/** The trace resources of one task. */
export function tracesOf(traces: StoredTrace[], taskId: string): StoredTrace[] {
  return traces.filter((t) => t.taskId === taskId);
}

/** Reads the traces until `enough` holds for them or `timeoutMs` passes (traces of a winding-down rollout land late). */
export async function awaitTraces(server: Server, enough: (traces: StoredTrace[]) => boolean, timeoutMs = 10_000): Promise<StoredTrace[]> {
  const deadline = Date.now() + timeoutMs;
  let traces = await readTraces(server);
  while (!enough(traces) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    traces = await readTraces(server);
  }
  return traces;
}

export interface TraceTree {
  /** Documents read: the trace and every turn or part URI it (or they) named. */
  documents: number;
  largestBytes: number;
  /** URIs named but not readable, with why. */
  unreadable: string[];
}

/** At most this many documents per trace: a bound on the walk, far above any real trace's turns and parts. */
const MAX_DOCUMENTS = 400;

/**
 * Reads a trace and every URI below it that its documents name (turns, parts), as a client that wants the
 * whole record must: each answer has to be readable by a standard SDK client.
 */
export async function readTraceTree(server: Server, uri: string): Promise<TraceTree> {
  const below = new RegExp(`${uri.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[A-Za-z0-9/_.-]+`, 'g');
  const tree: TraceTree = { documents: 0, largestBytes: 0, unreadable: [] };
  const seen = new Set([uri]);
  const queue = [uri];
  while (queue.length > 0 && tree.documents < MAX_DOCUMENTS) {
    const next = queue.shift()!;
    let text: string;
    try {
      const read = await server.readResource(next);
      text = read.contents.map((c) => ('text' in c && typeof c.text === 'string' ? c.text : '')).join('');
    } catch (error) {
      tree.unreadable.push(`${next}: ${(error as Error).message.slice(0, 100)}`);
      continue;
    }
    tree.documents += 1;
    tree.largestBytes = Math.max(tree.largestBytes, Buffer.byteLength(text));
    for (const [found] of text.matchAll(below)) {
      if (!seen.has(found)) {
        seen.add(found);
        queue.push(found);
      }
    }
  }
  return tree;
}
