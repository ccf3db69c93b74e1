// The Docker image, openenv.yaml and the Hugging Face Space, checked without a Docker engine: what the Dockerfile
// copies exists and reaches the build context, the runtime stage installs what sandboxes need, the manifest and the
// Space's front matter say what OpenEnv and Hugging Face read, and the image's CMD and HEALTHCHECK work when run the
// way the container runs them.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cliPath, makeSystemTempDir, makeTempDir, removeDir, repoRoot } from './helpers/server.js';

interface Instruction {
  keyword: string;
  args: string;
  /** Index of the FROM stage it belongs to. */
  stage: number;
}

/** Dockerfile instructions: comments dropped, `\` continuations joined, each tagged with its stage. */
function parseDockerfile(text: string): Instruction[] {
  const logical = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  let stage = -1;
  return logical.map((line) => {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (keyword.toUpperCase() === 'FROM') stage += 1;
    return { keyword: keyword.toUpperCase(), args, stage };
  });
}

/** `COPY [--from=x] src... dest`: its sources and its --from stage, if any. */
function copySources(args: string): { from: string | null; sources: string[] } {
  const words = args.split(/\s+/);
  const from = words.find((word) => word.startsWith('--from='))?.slice('--from='.length) ?? null;
  const paths = words.filter((word) => !word.startsWith('--'));
  return { from, sources: paths.slice(0, -1) };
}

/** The small YAML subset openenv.yaml and front matter use: `key: scalar` lines, nested blocks skipped. */
function parseFlatYaml(text: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (/^\s*(#|$)/.test(line) || /^\s/.test(line)) continue;
    const match = /^([A-Za-z_][\w-]*):\s*(.*?)\s*$/.exec(line);
    assert.ok(match, `not a "key: value" line: ${line}`);
    result[match[1]!] = match[2]!.replace(/^(["'])(.*)\1$/, '$2');
  }
  return result;
}

function frontMatter(markdown: string): Record<string, string> {
  const match = /^---\n([\s\S]*?)\n---\n/.exec(markdown);
  assert.ok(match, 'the README starts with a --- front matter block');
  return parseFlatYaml(match[1]!);
}

function read(file: string): string {
  return readFileSync(path.join(repoRoot, file), 'utf8');
}

const dockerfile = parseDockerfile(read('Dockerfile'));
const runtimeStage = Math.max(...dockerfile.map((i) => i.stage));
const runtime = dockerfile.filter((i) => i.stage === runtimeStage);
const only = (keyword: string, instructions = runtime): Instruction => {
  const found = instructions.filter((i) => i.keyword === keyword);
  assert.equal(found.length, 1, `one ${keyword} in the runtime stage`);
  return found[0]!;
};
/** The exec-form argv of CMD or HEALTHCHECK CMD. */
const execForm = (json: string): string[] => JSON.parse(json) as string[];

describe('Dockerfile', () => {
  test('two stages on the Node major the package supports, the runtime one not root', () => {
    const froms = dockerfile.filter((i) => i.keyword === 'FROM').map((i) => i.args);
    assert.equal(froms.length, 2, `a build and a runtime stage: ${froms.join(' | ')}`);
    for (const from of froms) assert.match(from, /^node:20-bookworm-slim\b/);
    const user = only('USER').args;
    assert.ok(user !== 'root' && user !== '0', `the runtime stage runs as a non-root user, not ${user}`);
  });

  test('every COPY source exists, reaches the build context, or is made by the build stage', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#'));
    const buildStage = dockerfile.filter((i) => i.stage === 0);
    const builtByStage = buildStage.some((i) => i.keyword === 'RUN' && /npm ci\b/.test(i.args) && /npm prune --omit=dev/.test(i.args));
    assert.ok(builtByStage, 'the build stage runs npm ci (whose prepare script builds dist/) and npm prune --omit=dev');
    assert.equal(only('WORKDIR', buildStage).args, '/app', 'the build stage works in /app');
    for (const copy of dockerfile.filter((i) => i.keyword === 'COPY')) {
      const { from, sources } = copySources(copy.args);
      for (const source of sources) {
        if (from === 'build') {
          assert.ok(['/app/package.json', '/app/node_modules', '/app/dist'].includes(source), `${source} is made by the build stage`);
          continue;
        }
        assert.ok(existsSync(path.join(repoRoot, source)), `COPY source ${source} exists in the repository`);
        assert.ok(!ignored.includes(source), `COPY source ${source} is not excluded by .dockerignore`);
      }
    }
    assert.ok(ignored.includes('node_modules') && ignored.includes('dist'), 'the host node_modules and dist stay out of the build context');
  });

  test('the runtime stage installs what CI installs for sandboxes, and python3', () => {
    const installed = runtime
      .filter((i) => i.keyword === 'RUN' && /apt-get install/.test(i.args))
      .flatMap((i) =>
        i.args
          .split(/apt-get install/)[1]!
          .split('&&')[0]!
          .split(/\s+/),
      )
      .filter((word) => word && !word.startsWith('-'));
    // Only for tests: iproute2 (the E2B stand-in's shared network namespace) and chromium (the web UI test). util-linux
    // (setpriv, prlimit) is Essential in Debian, so the base image has it.
    const testOnly = new Set(['iproute2', 'chromium']);
    const ciPackages = [...read('.ci/run').matchAll(/missing\+=\((\S+)\)/g)].map((m) => m[1]!).filter((p) => !testOnly.has(p));
    assert.ok(ciPackages.includes('bubblewrap'), `.ci/run still installs bubblewrap: ${ciPackages.join(', ')}`);
    for (const pkg of [...ciPackages, 'python3'])
      assert.ok(installed.includes(pkg), `the image installs ${pkg} (has ${installed.join(', ')})`);
  });

  test('port 8000 on every interface, the web UI on, CMD `node dist/cli.js http`, HEALTHCHECK on /health', () => {
    assert.equal(only('EXPOSE').args, '8000');
    const env = only('ENV').args;
    for (const setting of ['HOST=0.0.0.0', 'PORT=8000', 'ENABLE_WEB_INTERFACE=true'])
      assert.ok(env.split(/\s+/).includes(setting), `ENV sets ${setting}`);
    assert.deepEqual(execForm(only('CMD').args), ['node', 'dist/cli.js', 'http']);
    const healthcheck = only('HEALTHCHECK').args;
    const argv = execForm(healthcheck.slice(healthcheck.indexOf('CMD ') + 'CMD '.length));
    assert.equal(argv[0], 'node', 'the health check needs no curl');
    assert.match(argv.join(' '), /\/health\b/);
  });
});

describe('openenv.yaml', () => {
  test('spec_version 1, named so that OpenEnv infers the opencode env, port 8000', () => {
    const manifest = parseFlatYaml(read('openenv.yaml'));
    assert.equal(manifest.spec_version, '1');
    assert.equal(manifest.name, 'opencode_env');
    assert.equal(manifest.type, 'space');
    assert.equal(manifest.port, '8000');
    assert.ok(manifest.description, 'a description for auto-discovery');
  });
});

describe('Hugging Face Space', () => {
  const checkFrontMatter = (readme: string) => {
    const meta = frontMatter(readme);
    assert.equal(meta.sdk, 'docker');
    assert.equal(meta.app_port, '8000');
    assert.equal(meta.base_path, '/web');
    for (const key of ['title', 'emoji', 'colorFrom', 'colorTo', 'short_description']) assert.ok(meta[key], `front matter sets ${key}`);
    // Hugging Face rejects a longer short_description.
    assert.ok(meta.short_description!.length <= 60, `short_description is at most 60 characters: ${meta.short_description}`);
  };

  test('the Space README front matter', () => checkFrontMatter(read('spaces/opencode-env/README.md')));

  test('scripts/make-space.sh assembles a folder the Dockerfile builds from, and refuses a foreign one', () => {
    const out = makeSystemTempDir('space');
    try {
      const made = spawnSync(path.join(repoRoot, 'scripts/make-space.sh'), [out], { encoding: 'utf8' });
      assert.equal(made.status, 0, `make-space.sh failed: ${made.stderr}`);
      checkFrontMatter(readFileSync(path.join(out, 'README.md'), 'utf8'));
      assert.equal(
        readFileSync(path.join(out, 'Dockerfile'), 'utf8'),
        read('Dockerfile'),
        'the Space builds with the repository Dockerfile',
      );
      for (const copy of dockerfile.filter((i) => i.keyword === 'COPY' && copySources(i.args).from === null)) {
        for (const source of copySources(copy.args).sources) assert.ok(existsSync(path.join(out, source)), `the Space holds ${source}`);
      }
      assert.ok(existsSync(path.join(out, 'src/cli.ts')) && !existsSync(path.join(out, 'node_modules')), 'sources, never node_modules');
      const again = spawnSync(path.join(repoRoot, 'scripts/make-space.sh'), [out], { encoding: 'utf8' });
      assert.equal(again.status, 0, `make-space.sh refreshes its own output: ${again.stderr}`);
    } finally {
      removeDir(out);
    }
    const foreign = makeSystemTempDir('not-a-space');
    try {
      spawnSync('touch', [path.join(foreign, 'precious.txt')]);
      const refused = spawnSync(path.join(repoRoot, 'scripts/make-space.sh'), [foreign], { encoding: 'utf8' });
      assert.equal(refused.status, 1, 'a directory with other files is refused');
      assert.ok(existsSync(path.join(foreign, 'precious.txt')), 'and nothing in it is deleted');
    } finally {
      removeDir(foreign);
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Runs the HEALTHCHECK's own command, as Docker would inside the container; resolves to its exit code. */
function runHealthcheck(port: number): number | null {
  const healthcheck = only('HEALTHCHECK').args;
  const [command, ...args] = execForm(healthcheck.slice(healthcheck.indexOf('CMD ') + 'CMD '.length));
  return spawnSync(command === 'node' ? process.execPath : command!, args, { env: { ...process.env, PORT: String(port) }, timeout: 20_000 })
    .status;
}

describe("the image's CMD, run outside Docker", () => {
  let server: ChildProcess | null = null;
  let port = 0;
  let stderr = '';
  let home = '';

  before(async () => {
    assert.ok(existsSync(cliPath), 'dist/cli.js exists (npm run build)');
    port = await freePort();
    home = makeTempDir('docker-cmd');
    // The image's environment (ENV) over a clean one: no token, the web UI on, every interface.
    server = spawn(process.execPath, [cliPath, 'http'], {
      cwd: repoRoot,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: home,
        HOST: '0.0.0.0',
        PORT: String(port),
        ENABLE_WEB_INTERFACE: 'true',
        NODE_ENV: 'production',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('serving HTTP on')) {
      assert.ok(server.exitCode === null, `the server exited early: ${stderr}`);
      assert.ok(Date.now() < deadline, `the server did not start within 60 s: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });

  after(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server!.once('exit', resolve));
      server.kill('SIGTERM');
      const timer = setTimeout(() => server!.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    if (home) removeDir(home);
  });

  test('listens on every interface and answers /health', async () => {
    assert.ok(stderr.includes(`0.0.0.0:${port}`), `the server says it serves on 0.0.0.0:${port}: ${stderr}`);
    const response = await fetch(`http://127.0.0.1:${port}/health`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'healthy' });
  });

  test('the HEALTHCHECK command passes against it, and fails where nothing listens', async () => {
    assert.equal(runHealthcheck(port), 0, 'healthy server: exit 0');
    assert.equal(runHealthcheck(await freePort()), 1, 'no server: exit 1');
  });
});
