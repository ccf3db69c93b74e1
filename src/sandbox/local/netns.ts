import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { unmount } from './tmpfs.js';

/**
 * One network namespace shared by every command of a sandbox (`LocalProviderOptions.sharedNetwork`, stand-ins of
 * remote backends only): loopback up and no other interface, so commands reach each other on 127.0.0.1, as in one
 * VM, and nothing else. It is held by a bind mount of its nsfs file inside the sandbox's host directory, so it goes
 * with an unmount, and the orphan cleanup that unmounts whatever is under a dead server's sandbox directories
 * removes it too. Nothing is registered in /run/netns (`ip netns list`) at any time.
 */

const find = (candidates: string[]): string | null => candidates.find((candidate) => existsSync(candidate)) ?? null;
const UNSHARE = find(['/usr/bin/unshare', '/bin/unshare']);
const NSENTER = find(['/usr/bin/nsenter', '/bin/nsenter']);
const IP = find(['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip']);

/** null when shared network namespaces can be made here; otherwise why not. */
export function sharedNetworkProblem(): string | null {
  if (process.getuid?.() !== 0) return 'the server does not run as root';
  if (!UNSHARE || !NSENTER) return 'unshare or nsenter (util-linux) is not installed';
  if (!IP) return 'ip (iproute2) is not installed';
  return null;
}

/** Makes a new network namespace with only loopback, up, and holds it at `file` (created here; its directory must exist). */
export async function createNetworkNamespace(file: string): Promise<void> {
  await writeFile(file, '', { mode: 0o600 });
  await new Promise<void>((resolve, reject) => {
    // unshare bind-mounts the new namespace onto `file` before it runs `ip` inside it.
    execFile(UNSHARE!, [`--net=${file}`, IP!, 'link', 'set', 'lo', 'up'], { timeout: 10_000 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`could not make the sandbox's network namespace: ${stderr.trim() || error.message}`));
      else resolve();
    });
  });
}

/** Releases the namespace held at `file` (it ends once no process is left in it). */
export async function removeNetworkNamespace(file: string): Promise<void> {
  await unmount(file);
}

/** Argv prefix that runs the rest in the namespace held at `file` (nsenter execs it: no extra process stays). */
export function enterNetworkArgs(file: string): string[] {
  return [NSENTER!, `--net=${file}`, '--'];
}
