import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * All diagnostics go to stderr: in stdio mode stdout belongs to the MCP protocol alone.
 * Synchronous writes so nothing is lost when the process exits right after logging.
 */
export function createLogger(level: string): Logger {
  return pino(
    {
      name: 'opencode-env',
      level,
      base: { pid: process.pid },
      redact: { paths: ['*.api_key', '*.apiKey', '*.authorization', '*.headers.authorization'], censor: '[redacted]' },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}
