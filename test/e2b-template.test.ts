import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serverEnv, startE2bStandIn, type E2bStandIn, type RecordedRequest } from './helpers/e2b-standin/index.js';

const root = path.resolve(import.meta.dirname, '..');
const cliPath = path.join(root, 'dist', 'cli.js');
const resources = path.join(root, 'resources');
const opencodeVersion = (JSON.parse(readFileSync(path.join(root, 'node_modules/opencode-ai/package.json'), 'utf8')) as { version: string })
  .version;

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI to its end (killed after a minute, or `timeoutMs`) with only the E2B variables given here. */
function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliRun> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(E2B_|OPENCODE_ENV_SANDBOX$|OPENCODE_ENV_E2B_)/.test(name)),
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cliPath, ...args],
      { env: { ...base, ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function described(run: CliRun): string {
  return `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
}

describe('opencode-env template', () => {
  it('show prints the template as a Dockerfile, offline and without a key', async () => {
    const run = await cli(['template', 'show']);
    assert.equal(run.code, 0, described(run));
    const lines = run.stdout.split('\n');
    assert.match(lines[0] ?? '', /^FROM node:/, described(run));
    assert.ok(lines.includes(`RUN npm install -g opencode-ai@${opencodeVersion}`), described(run));
    assert.ok(lines.includes('COPY python/driver.py /opt/opencode-env/resources/python/driver.py'), described(run));
    assert.ok(lines.includes('COPY sandbox/llm-relay.mjs /opt/opencode-env/resources/sandbox/llm-relay.mjs'), described(run));
  });

  it('build without E2B_API_KEY fails with exit 2, naming the variable', async () => {
    const run = await cli(['template', 'build']);
    assert.equal(run.code, 2, described(run));
    assert.match(run.stderr, /E2B_API_KEY/, described(run));
    assert.equal(run.stdout, '', described(run));
  });

  it('build rejects a --cpu that is not a positive whole number with exit 2', async () => {
    const run = await cli(['template', 'build', '--cpu', '1.5'], { E2B_API_KEY: 'e2b_unused' });
    assert.equal(run.code, 2, described(run));
    assert.match(run.stderr, /--cpu must be a positive whole number/, described(run));
  });

  describe('against the E2B stand-in', () => {
    let standIn: E2bStandIn;
    before(async () => {
      standIn = await startE2bStandIn();
    });
    after(async () => {
      await standIn?.close();
    });

    function sdkEnv(apiKey = standIn.apiKey): Record<string, string> {
      // The SDK reads E2B_API_URL itself; the CLI never passes an endpoint.
      return { E2B_API_KEY: apiKey, E2B_API_URL: standIn.apiUrl };
    }

    function requestsSince(start: number, method: string, pattern: RegExp): RecordedRequest[] {
      return standIn.requests.slice(start).filter((r) => r.server === 'api' && r.method === method && pattern.test(r.path));
    }

    it('build uploads the copied files and the steps, waits until ready, and prints the name', async () => {
      const start = standIn.requests.length;
      const run = await cli(['template', 'build', '--name', 'x', '--cpu', '4', '--memory-mb', '4096'], sdkEnv());
      assert.equal(run.code, 0, described(run));
      assert.equal(run.stdout, 'x\n', 'stdout is the template name alone');
      assert.match(run.stderr, /\[stand-in\] build ready/, 'the build log goes to stderr');

      const [requested] = requestsSince(start, 'POST', /^\/v3\/templates$/);
      assert.deepEqual(requested?.body, { name: 'x', cpuCount: 4, memoryMB: 4096 });

      const uploaded: Record<string, string> = {};
      for (const upload of requestsSince(start, 'PUT', /^\/_upload\//))
        Object.assign(uploaded, (upload.body as { files: Record<string, string> }).files);
      assert.deepEqual(Object.keys(uploaded).sort(), ['python/driver.py', 'sandbox/llm-relay.mjs']);
      for (const [file, content] of Object.entries(uploaded))
        assert.equal(content, readFileSync(path.join(resources, file), 'utf8'), `${file} as in resources/`);

      const [started] = requestsSince(start, 'POST', /^\/v2\/templates\/[^/]+\/builds\/[^/]+$/);
      const template = started?.body as { fromImage?: string; steps?: { type: string; args: string[] }[] } | undefined;
      assert.match(template?.fromImage ?? '', /^node:/);
      const steps = (template?.steps ?? []).map((step) => `${step.type} ${step.args.join(' ')}`);
      assert.ok(steps.includes(`RUN npm install -g opencode-ai@${opencodeVersion} root`), steps.join('\n'));
      assert.ok(steps.includes('COPY python/driver.py /opt/opencode-env/resources/python/driver.py root 0644'), steps.join('\n'));
      assert.ok(steps.includes('COPY sandbox/llm-relay.mjs /opt/opencode-env/resources/sandbox/llm-relay.mjs root 0644'), steps.join('\n'));
      assert.deepEqual(steps.slice(-2), ['USER user', 'WORKDIR /home/user']);
      assert.ok(requestsSince(start, 'GET', /\/builds\/[^/]+\/status$/).length > 0, 'polled the status');
    });

    it('a rejected key fails with one line that names E2B_API_KEY', async () => {
      const start = standIn.requests.length;
      const run = await cli(['template', 'build', '--name', 'x'], sdkEnv('e2b_wrong'));
      assert.equal(run.code, 1, described(run));
      assert.equal(requestsSince(start, 'POST', /^\/v3\/templates$/)[0]?.status, 401, 'the stand-in refused the key');
      const last = run.stderr.trim().split('\n').at(-1) ?? '';
      assert.match(
        last,
        /^opencode-env: could not build the E2B template "x": E2B rejected the API key \(401\): check E2B_API_KEY/,
        described(run),
      );
      assert.equal(run.stdout, '', described(run));
    });

    it("batch builds each Harbor task's environment into a template once, runs it at the image's WORKDIR, and reuses it", async () => {
      const scratch = mkdtempSync(path.join(os.tmpdir(), 'harbor-e2b-'));
      try {
        const env = serverEnv(standIn, { OPENCODE_ENV_SANDBOX: 'e2b', OPENCODE_ENV_DATA_DIR: path.join(scratch, 'data') });
        const examples = path.join(resources, 'examples', 'harbor');
        const batch = (out: string) =>
          cli(
            ['batch', examples, '--samples', '2', '--concurrency', '2', '--agent', 'oracle', '--out', path.join(scratch, out)],
            env,
            240_000,
          );
        const start = standIn.requests.length;
        const first = await batch('first');
        assert.equal(first.code, 0, described(first));
        const results = readFileSync(path.join(scratch, 'first', 'results.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line));
        assert.equal(results.length, 4, described(first));
        assert.ok(
          results.every((r) => r.reward === 1 && r.error === null),
          JSON.stringify(results),
        );
        // Two tasks, two environments: two builds, each named by its environment's hash.
        const builds = requestsSince(start, 'POST', /^\/v3\/templates$/).map((r) => (r.body as { name: string }).name);
        assert.equal(builds.length, 2, described(first));
        for (const name of builds) assert.match(name, /^opencode-env-harbor-[0-9a-f]{16}$/);
        assert.equal((first.stderr.match(/: built$/gm) ?? []).length, 2, described(first));
        // The sandboxes started from those templates, and the commands ran in the image's WORKDIR.
        const created = requestsSince(start, 'POST', /^\/v2\/sandboxes$/).map((r) => (r.body as { templateID: string }).templateID);
        assert.equal(created.length, 4);
        assert.deepEqual([...new Set(created)].sort(), [...builds].sort());
        const cwds = standIn.requests
          .slice(start)
          .filter((r) => r.server === 'envd' && r.path === '/process.Process/Start')
          .map((r) => (r.body as { process: { cwd?: string } }).process.cwd);
        assert.ok(cwds.includes('/app'), `commands ran in /app: ${JSON.stringify([...new Set(cwds)])}`);

        // Another batch of the same tasks builds nothing: the templates are there.
        const again = standIn.requests.length;
        const second = await batch('second');
        assert.equal(second.code, 0, described(second));
        assert.equal(requestsSince(again, 'POST', /^\/v3\/templates$/).length, 0, described(second));
        assert.equal((second.stderr.match(/already built, reused$/gm) ?? []).length, 2, described(second));
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    });

    it('a failed build fails with one line that points at the log and the definition', async () => {
      const run = await cli(['template', 'build', '--name', 'fail-x'], sdkEnv());
      assert.equal(run.code, 1, described(run));
      const last = run.stderr.trim().split('\n').at(-1) ?? '';
      assert.match(last, /the build failed on E2B: see the build log above, fix resources\/e2b\/template\.json/, described(run));
      assert.match(run.stderr, /step 9 failed/, 'the build log, failure included, is on stderr');
      assert.equal(run.stdout, '', described(run));
    });
  });
});
