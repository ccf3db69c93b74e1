import path from 'node:path';
import { ConnectFailure } from './connect-codec.js';
import type { SandboxSession } from './registry.js';

/**
 * envd's filesystem, done by small shell scripts run inside the sandbox as the request's user: permissions, ownership
 * and the paths that exist are then that user's, whatever the path (not only what the host maps).
 */

const NOT_FOUND = 44;
const ALREADY_EXISTS = 45;
const IS_DIRECTORY = 46;
const FS_TIMEOUT_MS = 30_000;

/** `EntryInfo` of filesystem.proto in its JSON form (int64 size as a string, Timestamp as RFC 3339). */
export interface EntryInfoJson {
  name: string;
  type: 'FILE_TYPE_FILE' | 'FILE_TYPE_DIRECTORY' | 'FILE_TYPE_SYMLINK' | 'FILE_TYPE_UNSPECIFIED';
  path: string;
  size: string;
  mode: number;
  permissions: string;
  owner: string;
  group: string;
  modifiedTime: string;
  symlinkTarget?: string;
}

interface ScriptResult {
  exitCode: number;
  stdout: Buffer;
  stderr: string;
}

async function runScript(sandbox: SandboxSession, script: string, args: string[], stdin?: Buffer): Promise<ScriptResult> {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  // envd creates what it writes with the user's identity and the default umask.
  const child = await sandbox.start(['/bin/bash', '-c', `umask 022; ${script}`, 'envd-fs', ...args], {
    cwd: sandbox.homeDir,
    onStdout: (chunk) => stdout.push(chunk),
    onStderr: (chunk) => stderr.push(chunk),
  });
  const timer = setTimeout(() => void child.kill(), FS_TIMEOUT_MS);
  try {
    if (stdin) await child.write(stdin);
    await child.endInput();
    const exit = await child.exited;
    return { exitCode: exit.exitCode, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8').trim() };
  } finally {
    clearTimeout(timer);
  }
}

function failureOf(result: ScriptResult, what: string): ConnectFailure {
  if (result.exitCode === NOT_FOUND) return new ConnectFailure('not_found', `${what}: no such file or directory`);
  if (result.exitCode === ALREADY_EXISTS) return new ConnectFailure('already_exists', `${what}: already exists`);
  if (result.exitCode === IS_DIRECTORY) return new ConnectFailure('invalid_argument', `${what}: is a directory`);
  return new ConnectFailure('internal', `${what}: ${result.stderr || `exit status ${result.exitCode}`}`);
}

/** envd resolves relative paths against the user's home directory. */
export function resolvePath(sandbox: SandboxSession, target: string): string {
  return path.posix.resolve(sandbox.homeDir, target);
}

const EXISTS = `[ -e "$1" ] || [ -L "$1" ] || exit ${NOT_FOUND}`;
/** find's description of each entry: type, size, mode (octal), owner, group, mtime, link target, path; NUL-separated. */
const ENTRY_FORMAT = `'%y\\0%s\\0%m\\0%u\\0%g\\0%T@\\0%l\\0%p\\0'`;
const ENTRY_FIELDS = 8;

function permissionString(type: string, mode: number): string {
  const bits = ['r', 'w', 'x'];
  let text = type === 'd' ? 'd' : type === 'l' ? 'L' : '-';
  for (let i = 8; i >= 0; i--) text += mode & (1 << i) ? bits[(8 - i) % 3] : '-';
  return text;
}

function parseEntries(output: Buffer): EntryInfoJson[] {
  const fields = output.toString('utf8').split('\0');
  const entries: EntryInfoJson[] = [];
  for (let i = 0; i + ENTRY_FIELDS <= fields.length; i += ENTRY_FIELDS) {
    const [type = '', size = '0', mode = '0', owner = '', group = '', mtime = '0', linkTarget = '', entryPath = ''] = fields.slice(
      i,
      i + ENTRY_FIELDS,
    );
    const modeBits = parseInt(mode, 8);
    entries.push({
      name: path.posix.basename(entryPath),
      type:
        type === 'f'
          ? 'FILE_TYPE_FILE'
          : type === 'd'
            ? 'FILE_TYPE_DIRECTORY'
            : type === 'l'
              ? 'FILE_TYPE_SYMLINK'
              : 'FILE_TYPE_UNSPECIFIED',
      path: entryPath,
      size,
      mode: modeBits,
      permissions: permissionString(type, modeBits),
      owner,
      group,
      modifiedTime: new Date(Math.floor(Number(mtime) * 1000)).toISOString(),
      ...(linkTarget ? { symlinkTarget: linkTarget } : {}),
    });
  }
  return entries;
}

export async function statEntry(sandbox: SandboxSession, target: string): Promise<EntryInfoJson> {
  const result = await runScript(sandbox, `${EXISTS}; find "$1" -maxdepth 0 -printf ${ENTRY_FORMAT}`, [target]);
  if (result.exitCode !== 0) throw failureOf(result, target);
  const [entry] = parseEntries(result.stdout);
  if (!entry) throw new ConnectFailure('internal', `${target}: stat gave nothing`);
  return entry;
}

export async function listDir(sandbox: SandboxSession, target: string, depth: number): Promise<EntryInfoJson[]> {
  const script = `${EXISTS}; [ -d "$1" ] || exit ${IS_DIRECTORY}; find "$1" -mindepth 1 -maxdepth "$2" -printf ${ENTRY_FORMAT}`;
  const result = await runScript(sandbox, script, [target, String(Math.max(1, depth))]);
  if (result.exitCode !== 0) throw failureOf(result, target);
  return parseEntries(result.stdout);
}

export async function makeDir(sandbox: SandboxSession, target: string): Promise<EntryInfoJson> {
  const result = await runScript(sandbox, `[ -e "$1" ] && exit ${ALREADY_EXISTS}; mkdir -p -- "$1"`, [target]);
  if (result.exitCode !== 0) throw failureOf(result, target);
  return statEntry(sandbox, target);
}

export async function removePath(sandbox: SandboxSession, target: string): Promise<void> {
  const result = await runScript(sandbox, `${EXISTS}; rm -rf -- "$1"`, [target]);
  if (result.exitCode !== 0) throw failureOf(result, target);
}

export async function movePath(sandbox: SandboxSession, source: string, destination: string): Promise<EntryInfoJson> {
  const result = await runScript(sandbox, `${EXISTS}; mkdir -p -- "$(dirname -- "$2")" && mv -T -- "$1" "$2"`, [source, destination]);
  if (result.exitCode !== 0) throw failureOf(result, source);
  return statEntry(sandbox, destination);
}

/** `GET /files`: the file's bytes; a directory is a 400 and a missing path a 404, as envd answers. */
export async function readFileBytes(sandbox: SandboxSession, target: string): Promise<Buffer> {
  const result = await runScript(sandbox, `${EXISTS}; [ -d "$1" ] && exit ${IS_DIRECTORY}; cat -- "$1"`, [target]);
  if (result.exitCode !== 0) throw failureOf(result, target);
  return result.stdout;
}

/** `POST /files`: creates the parent directories and overwrites, as envd does. */
export async function writeFileBytes(sandbox: SandboxSession, target: string, content: Buffer): Promise<void> {
  const script = `[ -d "$1" ] && exit ${IS_DIRECTORY}; mkdir -p -- "$(dirname -- "$1")" && cat > "$1"`;
  const result = await runScript(sandbox, script, [target], content);
  if (result.exitCode !== 0) throw failureOf(result, target);
}
