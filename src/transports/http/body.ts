import type { IncomingMessage, ServerResponse } from 'node:http';

/** An HTTP error with its status, for a route to throw and the server to answer. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The JSON body to answer with; `{ detail: message }` (FastAPI's shape, as OpenEnv clients expect) by default. */
    readonly body?: unknown,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The request body, refused with 413 past `limit` bytes (read no further than that). */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new HttpError(413, `request body over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The body as JSON; an empty body is `emptyAs`; malformed JSON is a 400 (never a crash). */
export async function readJson(req: IncomingMessage, limit: number, emptyAs: unknown = {}): Promise<unknown> {
  const body = await readBody(req, limit);
  if (body.length === 0) return emptyAs;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new HttpError(400, `malformed JSON: ${(error as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
