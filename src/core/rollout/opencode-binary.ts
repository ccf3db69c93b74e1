import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** opencode-ai ships its binary in one optional package per platform; these are the names it uses. */
function candidatePackages(): string[] {
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  const arch = process.arch;
  const base = `opencode-${os}-${arch}`;
  const isMusl =
    os === 'linux' &&
    !(process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  const hasAvx2 = arch !== 'x64' || os !== 'linux' || /\bavx2\b/.test(safeRead('/proc/cpuinfo'));
  const variants = isMusl ? [`${base}-musl`, `${base}-baseline-musl`] : [base, `${base}-baseline`];
  // Without AVX2 only the baseline build runs.
  return hasAvx2 ? variants : variants.reverse();
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
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
