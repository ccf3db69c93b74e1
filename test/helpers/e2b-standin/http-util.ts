import type { IncomingMessage, ServerResponse } from 'node:http';

/** One request as the stand-in saw it, for tests that check what the SDK sent. */
export interface RecordedRequest {
  server: 'api' | 'envd';
  method: string;
  /** Path without the query string, e.g. `/v2/sandboxes` or `/process.Process/Start`. */
  path: string;
  query: Record<string, string>;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  /** The parsed JSON body (a streaming call's first envelope), or undefined for other bodies. */
  body: unknown;
  /** The answer's HTTP status, set once it is sent. */
  status?: number;
  /** When it arrived (`performance.now()`), e.g. to attribute requests to the phases of a rollout. */
  at: number;
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

export function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status);
  res.end();
}

export function headerRecord(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers))
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  return headers;
}
