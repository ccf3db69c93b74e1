import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/**
 * opencode-ai ships its binary in one optional package per platform; these are the names it uses. npm
 * installs only the packages whose libc matches this machine (the lock file records it), so the first
 * one present is the right one; asking node for the libc (process.report) costs more than looking.
 */
function candidatePackages(): string[] {
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  const base = `opencode-${os}-${process.arch}`;
  const hasAvx2 = process.arch !== 'x64' || os !== 'linux' || /\bavx2\b/.test(safeRead('/proc/cpuinfo'));
  // Without AVX2 only the baseline build runs.
  const builds = hasAvx2 ? ['', '-baseline'] : ['-baseline', ''];
  const libcs = os === 'linux' ? ['', '-musl'] : [''];
  return libcs.flatMap((libc) => builds.map((build) => `${base}${build}${libc}`));
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The version of the installed opencode-ai dependency: what sandboxes without opencode get (and templates pin). */
export function installedOpencodeVersion(): string {
  return (JSON.parse(readFileSync(require.resolve('opencode-ai/package.json'), 'utf8')) as { version: string }).version;
}

/**
 * The real opencode binary from the installed opencode-ai dependency (its platform package), or the
 * override (OPENCODE_ENV_OPENCODE_BIN) when set. Throws with what to do when there is none.
 */
export function findOpencodeBinary(override: string | null): string {
  if (override) {
    if (!existsSync(override)) throw new Error(`OPENCODE_ENV_OPENCODE_BIN=${override} does not exist`);
    return path.resolve(override);
  }
  const tried: string[] = [];
  for (const pkg of candidatePackages()) {
    tried.push(pkg);
    try {
      const manifest = require.resolve(`${pkg}/package.json`);
      const binary = path.join(path.dirname(manifest), 'bin', process.platform === 'win32' ? 'opencode.exe' : 'opencode');
      if (existsSync(binary)) return binary;
    } catch {
      // not installed for this platform variant
    }
  }
  throw new Error(`the opencode binary was not found (looked for ${tried.join(', ')}); run npm install, or set OPENCODE_ENV_OPENCODE_BIN`);
}
