// Builds dist/ from src/: a type check, then esbuild bundles the CLI. Bundled because MCP hosts start the
// stdio server often and wait for its `initialize` answer, and loading ~40 small modules one by one costs
// more than the code in them (see `npm run bench:startup`). Code splitting keeps every dynamic import a
// chunk of its own, so a command still loads only what it uses. Packages stay external (node_modules).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json'), '--noEmit'], { stdio: 'inherit' });

rmSync(path.join(root, 'dist'), { recursive: true, force: true });
await build({
  entryPoints: [path.join(root, 'src/cli.ts')],
  outdir: path.join(root, 'dist'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
});
