import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** `json`: one JSON object per line, for servers and machines. `human`: short readable lines, for a person at a terminal. */
export type LogFormat = 'json' | 'human';

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const HIDDEN_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);

/** Turns pino's JSON lines into `warn: message (key=value, ...)` on stderr. */
function humanStderr(): DestinationStream {
  return {
    write(line: string) {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        process.stderr.write(line);
        return;
      }
      const details = Object.entries(entry)
        .filter(([key]) => !HIDDEN_FIELDS.has(key))
        .map(([key, value]) => {
          const shown = key === 'err' && value && typeof value === 'object' ? (value as { message?: unknown }).message : value;
          return `${key}=${typeof shown === 'string' ? shown : JSON.stringify(shown)}`;
        });
      const level = LEVEL_NAMES[entry.level as number] ?? 'log';
      process.stderr.write(
        `${level}: ${typeof entry.msg === 'string' ? entry.msg : JSON.stringify(entry.msg ?? '')}${details.length > 0 ? ` (${details.join(', ')})` : ''}\n`,
      );
    },
  };
}

/**
 * All diagnostics go to stderr: in stdio mode stdout belongs to the MCP protocol alone.
 * Synchronous writes so nothing is lost when the process exits right after logging.
 */
export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  return pino(
    {
      name: 'opencode-env',
      level,
      base: { pid: process.pid },
      redact: { paths: ['*.api_key', '*.apiKey', '*.authorization', '*.headers.authorization'], censor: '[redacted]' },
    },
    format === 'human' ? humanStderr() : pino.destination({ dest: 2, sync: true }),
  );
}
