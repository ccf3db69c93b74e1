import path from 'node:path';
import type { Sandbox } from '../../sandbox/types.js';

const FILE_CONTENT_LIMIT = 64 * 1024;
const FILES_TOTAL_LIMIT = 1024 * 1024;
const MAX_FILES = 500;
/** Directories whose contents are tooling, not the agent's work: named once, not walked. */
const SKIPPED_DIRS = new Set(['.git', 'node_modules', '__pycache__', '.venv', 'venv', '.mypy_cache', '.pytest_cache', '.cache']);

export interface CollectedFiles {
  files: Record<string, string>;
  files_extra: string[];
}

function looksBinary(content: Buffer): boolean {
  if (content.includes(0)) return true;
  return content.toString('utf8').includes('\uFFFD');
}

/**
 * The workdir's text files, small ones in full, the rest named in `files_extra`. Symlinks are listed,
 * never followed, so a link the agent planted cannot pull a file from outside the workdir.
 */
export async function collectWorkdirFiles(sandbox: Sandbox): Promise<CollectedFiles> {
  const entries = await sandbox.listFiles(sandbox.workdir);
  const extra: string[] = [];
  const candidates: string[] = [];
  let total = 0;
  const skippedPrefixes: string[] = [];
  for (const entry of entries.sort((a, b) => a.path.localeCompare(b.path))) {
    if (skippedPrefixes.some((prefix) => entry.path.startsWith(prefix))) continue;
    if (entry.type === 'dir') {
      if (SKIPPED_DIRS.has(path.posix.basename(entry.path))) {
        skippedPrefixes.push(`${entry.path}/`);
        extra.push(`${entry.path}/`);
      }
      continue;
    }
    if (
      entry.type !== 'file' ||
      entry.size > FILE_CONTENT_LIMIT ||
      total + entry.size > FILES_TOTAL_LIMIT ||
      candidates.length >= MAX_FILES
    ) {
      extra.push(entry.path);
      continue;
    }
    candidates.push(entry.path);
    total += entry.size;
  }
  // One read for all of them: a remote sandbox sends them as one archive.
  const contents = await sandbox.readFiles(candidates.map((file) => path.posix.join(sandbox.workdir, file)));
  const files: Record<string, string> = {};
  for (const file of candidates) {
    const content = contents.get(path.posix.join(sandbox.workdir, file));
    // Gone or changed since the listing, unreadable, or binary: named, not included.
    if (!content || content.length > FILE_CONTENT_LIMIT || looksBinary(content)) extra.push(file);
    else files[file] = content.toString('utf8');
  }
  return { files, files_extra: extra.sort() };
}

/** Rejects staged-file paths that would land outside the workdir. */
export function validateStagedPath(relative: string): string | null {
  if (!relative || path.posix.isAbsolute(relative) || relative.split('/').includes('..')) {
    return `files: ${JSON.stringify(relative)} must be a relative path inside the workdir (no leading / and no ..)`;
  }
  return null;
}
