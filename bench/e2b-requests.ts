/**
 * Counting what the E2B backend asks of E2B: the stand-in records every HTTP request (control plane and envd) with its
 * arrival time, and these helpers cut that record into windows (one tool call) or phases (of a rollout).
 */
import type { RecordedRequest } from '../test/helpers/e2b-standin/index.js';

/** A short name for a request: envd's Connect RPCs by method (`Start`, `SendInput`), the rest by verb and path. */
export function requestKind(request: RecordedRequest): string {
  if (request.server === 'envd' && /^\/[\w.]+\/\w+$/.test(request.path)) return request.path.split('/').at(-1)!;
  if (request.server === 'api' && request.method === 'POST' && request.path === '/v2/sandboxes') return 'create';
  if (request.server === 'api' && request.method === 'DELETE') return 'kill';
  // Sandbox ids and hashes vary from run to run; the kind of request does not.
  const path = request.path.replace(/\/[^/]*\d[^/]*(?=\/|$)/g, '/:id');
  return `${request.method} ${path}`;
}

/** `Start 2, SendInput 5` — the kinds of requests, most frequent first. */
export function describeRequests(requests: readonly RecordedRequest[]): string {
  const counts = new Map<string, number>();
  for (const request of requests) counts.set(requestKind(request), (counts.get(requestKind(request)) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ');
}

export function isCreate(request: RecordedRequest): boolean {
  return requestKind(request) === 'create';
}

/** Runs `work` and returns, with its result, the requests that arrived while it ran. */
export async function requestsDuring<T>(
  requests: readonly RecordedRequest[],
  work: () => Promise<T>,
): Promise<{ value: T; requests: RecordedRequest[]; ms: number }> {
  const first = requests.length;
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started, requests: requests.slice(first) };
}

export interface PhaseMark {
  phase: string;
  /** `performance.now()` when the client saw the `phase: <name>` progress notification. */
  at: number;
}

/**
 * Requests per phase: each request belongs to the phase most recently announced before it arrived (`before` when none
 * was yet). The server announces a phase before starting its work, so the only risk is a phase's first request
 * overtaking its announcement (stdio vs TCP, both read by this process's event loop); in practice the HTTP request
 * needs longer to be made.
 */
export function requestsByPhase(requests: readonly RecordedRequest[], marks: readonly PhaseMark[]): Map<string, RecordedRequest[]> {
  const byPhase = new Map<string, RecordedRequest[]>(marks.map((mark) => [mark.phase, []]));
  for (const request of requests) {
    const phase = marks.filter((mark) => mark.at <= request.at).at(-1)?.phase ?? 'before';
    byPhase.set(phase, [...(byPhase.get(phase) ?? []), request]);
  }
  return byPhase;
}
