import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Compared as hashes, so neither the length nor the content leaks through timing. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * Whether a request may proceed when the server has a token: `Authorization: Bearer <token>`, or (for browsers, which
 * cannot set headers on a WebSocket handshake or a download link) `?token=<token>` where `allowQuery` says so.
 */
export function isAuthorized(req: IncomingMessage, url: URL, token: string | null, allowQuery: boolean): boolean {
  if (token === null) return true;
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (match && sameSecret(match[1]!, token)) return true;
  }
  const fromQuery = allowQuery ? url.searchParams.get('token') : null;
  return fromQuery !== null && sameSecret(fromQuery, token);
}
