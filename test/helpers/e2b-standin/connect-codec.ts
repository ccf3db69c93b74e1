import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Connect protocol, JSON codec (what `@connectrpc/connect-web` speaks with `useBinaryFormat: false`): unary calls are
 * plain JSON bodies; server streams are 5-byte envelopes (flags, big-endian length) ending with an end-stream envelope.
 */

/** Connect error codes the stand-in answers with, and the HTTP status Connect maps each to for unary calls. */
export const CONNECT_HTTP_STATUS = {
  invalid_argument: 400,
  unauthenticated: 401,
  not_found: 404,
  already_exists: 409,
  deadline_exceeded: 504,
  unavailable: 503,
  internal: 500,
} as const;
export type ConnectCode = keyof typeof CONNECT_HTTP_STATUS;

export class ConnectFailure extends Error {
  constructor(
    readonly code: ConnectCode,
    message: string,
  ) {
    super(message);
  }
}

const END_STREAM_FLAG = 0x02;

export function envelope(message: unknown, flags = 0): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  const header = Buffer.alloc(5);
  header.writeUInt8(flags, 0);
  header.writeUInt32BE(json.length, 1);
  return Buffer.concat([header, json]);
}

export function endStreamEnvelope(error?: ConnectFailure): Buffer {
  return envelope(error ? { error: { code: error.code, message: error.message } } : {}, END_STREAM_FLAG);
}

/** The first message of an enveloped request body (a server-streaming call carries exactly one). */
export function parseEnvelopedRequest(body: Buffer): unknown {
  if (body.length < 5) throw new ConnectFailure('invalid_argument', 'request body is not a Connect envelope');
  const length = body.readUInt32BE(1);
  return JSON.parse(body.subarray(5, 5 + length).toString('utf8'));
}

export function writeUnary(res: ServerResponse, message: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(message));
}

export function writeUnaryError(res: ServerResponse, error: ConnectFailure): void {
  res.writeHead(CONNECT_HTTP_STATUS[error.code], { 'content-type': 'application/json' });
  res.end(JSON.stringify({ code: error.code, message: error.message }));
}

/** `Connect-Timeout-Ms`: the client's deadline for the whole call, if it set one. */
export function connectDeadlineMs(req: IncomingMessage): number | null {
  const raw = req.headers['connect-timeout-ms'];
  const value = typeof raw === 'string' ? Number(raw) : NaN;
  return Number.isFinite(value) && value > 0 ? value : null;
}
