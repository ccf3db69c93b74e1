// Adds per-platform binary packages to package-lock.json when npm left them out: opencode-ai's binaries,
// and the napi-rs native bindings of oxc-parser (pulled in by the dev dependency knip).
//
// npm records an optional dependency in the lock file only if it could fetch its manifest; a registry
// mirror that carries only this machine's platform package therefore yields a lock file that `npm ci`
// rejects ("Missing: opencode-darwin-arm64@ from lock file"). With os/cpu/libc recorded, npm ci skips
// the packages of other platforms without fetching them. Run after any `npm install`/`npm uninstall`:
//   node scripts/lock-opencode-platforms.mjs
import { readFileSync, writeFileSync } from 'node:fs';

/** opencode-darwin-arm64, opencode-linux-x64-baseline-musl, opencode-windows-x64, ... */
function opencodePlatform(name) {
  const match = /^opencode-(darwin|linux|windows)-(x64|arm64)(-baseline)?(-musl)?$/.exec(name);
  if (!match) return undefined;
  const [, os, cpu, , musl] = match;
  return { cpu: [cpu], ...(musl ? { libc: ['musl'] } : os === 'linux' ? { libc: ['glibc'] } : {}), os: [os === 'windows' ? 'win32' : os] };
}

/** napi-rs names: @oxc-parser/binding-linux-x64-gnu, -linux-arm-musleabihf, -win32-ia32-msvc, -android-arm-eabi, ... */
function napiPlatform(name) {
  const match =
    /^@[^/]+\/binding-(darwin|linux|win32|android|freebsd|openharmony)-(x64|arm64|arm|ia32|ppc64|riscv64|s390x)(?:-(gnu|musl|gnueabihf|musleabihf|eabi|msvc))?$/.exec(
      name,
    );
  if (!match) return undefined;
  const [, os, cpu, abi] = match;
  const libc = abi?.startsWith('gnu') ? ['glibc'] : abi?.startsWith('musl') ? ['musl'] : undefined;
  return { cpu: [cpu], ...(libc ? { libc } : {}), os: [os] };
}

/** Lock-file keys of the packages whose platform packages may be missing, and how to read their names. */
const parents = [
  { key: 'node_modules/opencode-ai', platform: opencodePlatform, required: true },
  { key: 'node_modules/oxc-parser', platform: napiPlatform, required: false },
];

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));

let added = 0;
for (const { key: parentKey, platform, required } of parents) {
  const parent = lock.packages[parentKey];
  if (!parent) {
    if (required) throw new Error(`${parentKey.replace('node_modules/', '')} is not in package-lock.json; run npm install first`);
    continue;
  }
  // The platform packages sit next to their parent: node_modules/x or node_modules/a/node_modules/x.
  const base = parentKey.slice(0, parentKey.lastIndexOf('node_modules/') + 'node_modules/'.length);
  for (const [name, version] of Object.entries(parent.optionalDependencies ?? {})) {
    const key = `${base}${name}`;
    if (lock.packages[key] || lock.packages[`${parentKey}/node_modules/${name}`]) continue;
    const fields = platform(name);
    if (!fields) throw new Error(`unexpected platform package name: ${name} (optional dependency of ${parentKey})`);
    const { cpu, libc, os } = fields;
    lock.packages[key] = {
      version,
      cpu,
      ...(parent.dev ? { dev: true } : {}),
      ...(libc ? { libc } : {}),
      optional: true,
      os,
    };
    added += 1;
  }
}
const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
writeFileSync(file, `${JSON.stringify({ ...lock, packages: sorted }, null, 2)}\n`);
console.log(`added ${added} platform packages to package-lock.json`);
