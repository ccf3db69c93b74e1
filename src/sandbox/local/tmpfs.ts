import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Size-capped scratch space for a sandbox's /tmp: a tmpfs mounted on the host side (root only), so that one sandbox
 * cannot fill the host's disk through /tmp. Its pages are charged to the memory cgroup of whoever writes them, so
 * a sandbox's /tmp also counts against its memory limit.
 */

const MOUNT = ['/usr/bin/mount', '/bin/mount'].find((candidate) => existsSync(candidate)) ?? null;
const UMOUNT = ['/usr/bin/umount', '/bin/umount'].find((candidate) => existsSync(candidate)) ?? null;

function run(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 10_000 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(stderr.trim() || error.message));
      else resolve();
    });
  });
}

/** null when size-capped tmpfs mounts can be made here; otherwise why not. */
export function tmpfsProblem(): string | null {
  if (process.getuid?.() !== 0) return 'the server does not run as root';
  if (!MOUNT || !UMOUNT) return 'mount or umount is not installed';
  return null;
}

/** Mounts a tmpfs of at most `sizeBytes` at `dir` (which must exist), traversable by everyone and listable only by root. */
export async function mountTmpfs(dir: string, sizeBytes: number): Promise<void> {
  await run(MOUNT!, ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0711,nosuid,nodev`, 'opencode-env-tmp', dir]);
}

/** Unmounts `dir`; if something still holds it, detaches it lazily (it goes once the last user does). */
export async function unmount(dir: string): Promise<void> {
  await run(UMOUNT!, [dir]).catch(() => run(UMOUNT!, ['-l', dir]));
}

/** Mount points at or under `dir` in this mount namespace, deepest first (the order to unmount them in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const prefix = path.resolve(dir);
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point !== undefined)
    .map((point) => point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((point) => point === prefix || point.startsWith(`${prefix}/`))
    .sort((a, b) => b.length - a.length);
}
