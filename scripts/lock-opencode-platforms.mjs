// Adds opencode-ai's per-platform binary packages to package-lock.json when npm left them out.
//
// npm records an optional dependency in the lock file only if it could fetch its manifest; a registry
// mirror that carries only this machine's platform package therefore yields a lock file that `npm ci`
// rejects ("Missing: opencode-darwin-arm64@ from lock file"). With os/cpu/libc recorded, npm ci skips
// the packages of other platforms without fetching them. Run after changing the opencode-ai version:
//   node scripts/lock-opencode-platforms.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const parent = lock.packages['node_modules/opencode-ai'];
if (!parent) throw new Error('opencode-ai is not in package-lock.json; run npm install first');

let added = 0;
for (const [name, version] of Object.entries(parent.optionalDependencies ?? {})) {
  const key = `node_modules/${name}`;
  if (lock.packages[key]) continue;
  const match = /^opencode-(darwin|linux|windows)-(x64|arm64)(-baseline)?(-musl)?$/.exec(name);
  if (!match) throw new Error(`unexpected platform package name: ${name}`);
  const [, os, cpu, , musl] = match;
  lock.packages[key] = {
    version,
    cpu: [cpu],
    ...(musl ? { libc: ['musl'] } : os === 'linux' ? { libc: ['glibc'] } : {}),
    optional: true,
    os: [os === 'windows' ? 'win32' : os],
  };
  added += 1;
}
const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
writeFileSync(file, `${JSON.stringify({ ...lock, packages: sorted }, null, 2)}\n`);
console.log(`added ${added} platform packages to package-lock.json`);
