import { constants } from 'node:fs';
import { chmod, chown, lchown, lstat, mkdir, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { SandboxError } from '../../errors.js';
import type { FileEntry } from '../types.js';

/**
 * Host-side file access to a sandbox's directories that never follows a symlink: sandbox code controls
 * these trees and could plant a link to a host file that the server (perhaps root) would otherwise read.
 */
async function assertNoSymlinkBetween(base: string, target: string): Promise<void> {
  const rel = path.relative(base, target);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new SandboxError(`${target} is outside ${base}`);
  let current = base;
  for (const part of rel.split(path.sep).filter(Boolean).slice(0, -1)) {
    current = path.join(current, part);
    const info = await lstat(current).catch(() => null);
    if (info === null) return;
    if (!info.isDirectory()) throw new SandboxError(`${current} is not a directory (symlinks are not followed)`);
  }
}

export async function readFileNoFollow(base: string, target: string): Promise<Buffer> {
  await assertNoSymlinkBetween(base, target);
  const handle = await open(target, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new SandboxError(`${target} is not a regular file`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

export async function writeFileNoFollow(base: string, target: string, content: string | Uint8Array, owner: number | null): Promise<void> {
  await assertNoSymlinkBetween(base, target);
  const created = await mkdir(path.dirname(target), { recursive: true });
  if (owner !== null && created) {
    // Hand every directory we created to the sandbox user, from the first new one down.
    let dir = path.dirname(target);
    const dirs: string[] = [];
    while (dir.length >= created.length) {
      dirs.push(dir);
      dir = path.dirname(dir);
    }
    for (const d of dirs) await chown(d, owner, owner);
  }
  const handle = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
  try {
    await handle.writeFile(content);
    if (owner !== null) await handle.chown(owner, owner);
  } finally {
    await handle.close();
  }
}

export async function listTreeNoFollow(base: string, dir: string, maxDepth: number): Promise<FileEntry[]> {
  await assertNoSymlinkBetween(base, path.join(dir, 'x'));
  const entries: FileEntry[] = [];
  async function walk(current: string, depth: number): Promise<void> {
    const children = await readdir(current, { withFileTypes: true }).catch(() => []);
    for (const child of children) {
      const full = path.join(current, child.name);
      const rel = path.relative(dir, full).split(path.sep).join('/');
      const info = await lstat(full).catch(() => null);
      if (!info) continue;
      const type = info.isSymbolicLink() ? 'symlink' : info.isDirectory() ? 'dir' : info.isFile() ? 'file' : 'other';
      entries.push({ path: rel, type, size: type === 'file' ? info.size : 0 });
      if (type === 'dir' && depth < maxDepth) await walk(full, depth + 1);
    }
  }
  await walk(dir, 1);
  return entries;
}

/**
 * Removes whatever is at `target` (a file, a symlink (not what it points to), a tree with any modes). The sandbox's
 * processes must be gone. Without root, directories the sandbox made unreadable are opened up first.
 */
export async function removeNoFollow(target: string): Promise<void> {
  try {
    await rm(target, { recursive: true, force: true, maxRetries: 3 });
  } catch (error) {
    if (!['EACCES', 'EPERM', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
    await openUpTree(target);
    await rm(target, { recursive: true, force: true, maxRetries: 3 });
  }
}

async function openUpTree(dir: string): Promise<void> {
  const info = await lstat(dir).catch(() => null);
  if (!info?.isDirectory()) return;
  await chmod(dir, 0o700).catch(() => undefined);
  const children = await readdir(dir).catch(() => [] as string[]);
  for (const child of children) await openUpTree(path.join(dir, child));
}

/** Makes a fresh directory with exactly `mode` (no umask), owned by `owner` when given. */
export async function makeDir(dir: string, mode: number, owner: number | null): Promise<void> {
  await mkdir(dir, { mode });
  await chmod(dir, mode);
  if (owner !== null) await chown(dir, owner, owner);
}

/**
 * Gives every entry of the tree at `root` that `from` owns to `to`, never following a symlink (a link itself is
 * re-owned, not its target). Entries of other owners are left alone: a hard link the sandbox made to a file it does
 * not own must not hand that file over. The sandbox's processes must be gone, so that nothing changes underneath.
 */
export async function handOverTree(root: string, from: number, to: number): Promise<void> {
  const info = await lstat(root).catch(() => null);
  if (!info) return;
  if (info.uid === from) await lchown(root, to, to);
  if (!info.isDirectory()) return;
  const children = await readdir(root).catch(() => [] as string[]);
  for (const child of children) await handOverTree(path.join(root, child), from, to);
}
