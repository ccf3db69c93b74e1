/**
 * Logging: one JSON object per line on stderr (stdout belongs to the MCP protocol in stdio mode), written
 * synchronously so nothing is lost when the process exits right after. Small on purpose: the stdio server
 * starts often and waits for nothing it does not use. Lines keep pino's shape (numeric `level`, `time`,
 * `pid`, `name`, `msg`), so pino's tools read them.
 */
import { writeSync } from 'node:fs';

export type LogFormat = 'json' | 'human';

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
type LevelName = keyof typeof LEVELS;
const LEVEL_NAMES = Object.fromEntries(Object.entries(LEVELS).map(([name, value]) => [value, name])) as Record<number, LevelName>;

/** Values under these keys never reach a log line, at any depth: an API key must not leak through one. */
const REDACTED_KEYS = new Set(['api_key', 'apiKey', 'authorization']);

type LogMethod = {
  (message: string): void;
  (fields: Record<string, unknown>, message?: string): void;
};

export interface Logger {
  trace: LogMethod;
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
  fatal: LogMethod;
  /** A logger whose lines also carry `bindings`. */
  child(bindings: Record<string, unknown>): Logger;
}

function serializeError(error: Error): Record<string, unknown> {
  const cause = error.cause instanceof Error ? serializeError(error.cause) : error.cause;
  return { type: error.name, message: error.message, stack: error.stack, ...(cause !== undefined ? { cause } : {}) };
}

function replacer(key: string, value: unknown): unknown {
  if (REDACTED_KEYS.has(key) && value !== undefined) return '[redacted]';
  return value instanceof Error ? serializeError(value) : value;
}

/** Goes through JSON first, so redaction and error serialisation apply to the human format too. */
function humanLine(entry: Record<string, unknown>): string {
  const { level, time: _time, pid: _pid, name: _name, msg, ...fields } = entry;
  const details = Object.entries(fields).map(([key, value]) => {
    const shown = key === 'err' && value && typeof value === 'object' ? (value as { message?: unknown }).message : value;
    return `${key}=${typeof shown === 'string' ? shown : JSON.stringify(shown)}`;
  });
  return `${LEVEL_NAMES[level as number] ?? 'log'}: ${typeof msg === 'string' ? msg : ''}${details.length > 0 ? ` (${details.join(', ')})` : ''}\n`;
}

/** One log line as written: JSON (keys that may hold secrets redacted at any depth, errors serialised) or human. */
export function formatLogLine(entry: Record<string, unknown>, format: LogFormat): string {
  const json = JSON.stringify(entry, replacer);
  return format === 'json' ? `${json}\n` : humanLine(JSON.parse(json) as Record<string, unknown>);
}

function write(line: string): void {
  try {
    writeSync(2, line);
  } catch {
    // stderr is gone (the host closed it): nothing left to tell.
  }
}

function makeLogger(threshold: number, format: LogFormat, bindings: Record<string, unknown>): Logger {
  const method =
    (level: number): LogMethod =>
    (first: string | Record<string, unknown>, message?: string) => {
      if (level < threshold) return;
      const fields = typeof first === 'string' ? {} : first;
      const msg = typeof first === 'string' ? first : message;
      const entry = { level, time: Date.now(), ...bindings, ...fields, ...(msg !== undefined ? { msg } : {}) };
      write(formatLogLine(entry, format));
    };
  return {
    trace: method(LEVELS.trace),
    debug: method(LEVELS.debug),
    info: method(LEVELS.info),
    warn: method(LEVELS.warn),
    error: method(LEVELS.error),
    fatal: method(LEVELS.fatal),
    child: (more) => makeLogger(threshold, format, { ...bindings, ...more }),
  };
}

/** `level` is a level name or `silent`; `human` writes short readable lines for a person at a terminal. */
export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  const threshold = level === 'silent' ? Infinity : (LEVELS[level as LevelName] ?? LEVELS.info);
  return makeLogger(threshold, format, { pid: process.pid, name: 'opencode-env' });
}
