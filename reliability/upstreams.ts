import http from 'node:http';
import net from 'node:net';

/** How much of each request body a recorder keeps (for the key scan); the size is always counted. */
const KEPT_BODY_BYTES = 16 * 1024 * 1024;

export interface RecordedRequest {
  method: string;
  /** The request target exactly as received (no normalisation). */
  target: string;
  authorization: string | null;
  bodyBytes: number;
  body: Buffer;
}

export interface Recorder {
  /** Base URL to give as base_url (ends in /v1). */
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/**
 * An upstream that records every request it receives (method, raw target, Authorization header, body)
 * and relays it unchanged to `forwardTo` (e.g. a scripted model), so a rollout through it still runs.
 * Without `forwardTo` it answers 401, like an endpoint that only wants the key.
 */
export async function startRecorder(forwardTo?: string): Promise<Recorder> {
  const requests: RecordedRequest[] = [];
  const target = forwardTo ? new URL(forwardTo) : null;
  const server = http.createServer((req, res) => {
    const record: RecordedRequest = {
      method: req.method ?? '',
      target: req.url ?? '',
      authorization: req.headers.authorization ?? null,
      bodyBytes: 0,
      body: Buffer.alloc(0),
    };
    requests.push(record);
    const kept: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      if (record.bodyBytes < KEPT_BODY_BYTES) kept.push(chunk.subarray(0, KEPT_BODY_BYTES - record.bodyBytes));
      record.bodyBytes += chunk.length;
    });
    req.on('end', () => (record.body = Buffer.concat(kept)));
    if (!target) {
      req.resume();
      req.on('end', () => {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'recorded', type: 'authentication_error' } }));
      });
      return;
    }
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 75_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nothing listens on: an LLM endpoint that is down. */
export async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
