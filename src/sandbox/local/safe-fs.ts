import { constants } from 'node:fs';
import { chown, lstat, mkdir, open, readdir } from 'node:fs/promises';
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
