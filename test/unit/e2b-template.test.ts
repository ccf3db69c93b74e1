import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AuthenticationError, BuildError, FileUploadError, RateLimitError, Template } from 'e2b';
import { packageRoot, resourcesDir } from '../../src/paths.js';
import {
  buildTemplate,
  loadTemplateDefinition,
  templateBuildFailure,
  templateDockerfile,
  templateFromDefinition,
  TemplateBuildError,
} from '../../src/sandbox/e2b/template.js';

const installedOpencode = (
  JSON.parse(readFileSync(path.join(packageRoot, 'node_modules/opencode-ai/package.json'), 'utf8')) as { version: string }
).version;
const definition = loadTemplateDefinition();
const dockerfile = templateDockerfile(definition);
const dockerLines = dockerfile.split('\n');

describe('the E2B template definition', () => {
  it('starts from an image and pins opencode to the installed opencode-ai', () => {
    assert.match(dockerLines[0] ?? '', /^FROM \S+/, dockerfile);
    const npm = dockerLines.filter((line) => /npm install -g/.test(line));
    assert.ok(npm.length === 1, `one global npm install: ${dockerfile}`);
    assert.match(npm[0]!, new RegExp(`\\bopencode-ai@${installedOpencode.replace(/\./g, '\\.')}(\\s|$)`), `pinned to ${installedOpencode}`);
  });

  it('has node, python3 and git, and checks them while it is built', () => {
    assert.match(dockerLines[0] ?? '', /^FROM node:\d+/, 'node comes from the image');
    assert.ok(
      dockerLines.some((line) => /apt-get install .*\bpython3\b/.test(line) && /\bgit\b/.test(line)),
      `python3 and git installed: ${dockerfile}`,
    );
    assert.ok(
      dockerLines.some((line) => /node --version && python3 --version && git --version && opencode --version/.test(line)),
      'checked',
    );
  });

  it('copies the in-sandbox programs to /opt/opencode-env/resources, owned by root, and ends as `user` in /home/user', async () => {
    for (const resource of ['python/driver.py', 'sandbox/llm-relay.mjs']) {
      assert.ok(dockerLines.includes(`COPY ${resource} /opt/opencode-env/resources/${resource}`), `${resource} copied: ${dockerfile}`);
    }
    // The Dockerfile leaves out owners and modes; the SDK's own serialisation, which it sends to E2B, has them.
    const { steps } = JSON.parse(await Template.toJSON(templateFromDefinition(definition))) as {
      steps: { type: string; args: string[] }[];
    };
    const copies = steps.filter((step) => step.type === 'COPY').map((step) => step.args);
    assert.deepEqual(copies, [
      ['python/driver.py', '/opt/opencode-env/resources/python/driver.py', 'root', '0644'],
      ['sandbox/llm-relay.mjs', '/opt/opencode-env/resources/sandbox/llm-relay.mjs', 'root', '0644'],
    ]);
    assert.deepEqual(dockerLines.filter(Boolean).slice(-2), ['USER user', 'WORKDIR /home/user']);
  });

  it('copies only files that exist in resources/', () => {
    const copies = definition.steps.filter((s) => s.type === 'copy');
    assert.ok(copies.length >= 2, 'copies something');
    for (const copy of copies) {
      const file = path.join(resourcesDir, copy.src);
      assert.ok(existsSync(file) && statSync(file).isFile(), `${copy.src} is a file in resources/`);
    }
  });

  it('rejects a step it does not know, or a misspelt key, naming the file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'e2b-template-'));
    try {
      const file = path.join(dir, 'template.json');
      const misspelt = { type: 'copy', src: 'python/driver.py', dest: '/opt/x', mod: '0644' };
      for (const extra of [{ type: 'gitClone', url: 'x' }, misspelt]) {
        writeFileSync(file, JSON.stringify({ ...definition, steps: [...definition.steps, extra] }));
        assert.throws(
          () => loadTemplateDefinition(file),
          (error: Error) => error.message.startsWith(`${file} is not a valid template definition`),
          JSON.stringify(extra),
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('template build failures', () => {
  const cases: [string, unknown, RegExp][] = [
    [
      'a rejected key',
      new AuthenticationError('Unauthorized, please check your credentials.'),
      /E2B rejected the API key \(401\): check E2B_API_KEY/,
    ],
    ['a rate limit', new RateLimitError('Rate limit exceeded, please try again later'), /rate limit .* \(429\): wait a minute/],
    ['a refused team', new BuildError('403: team is blocked\n  more'), /E2B refused the build \(403\)/],
    [
      'a failed step',
      new BuildError('step 3 failed:\nexit status 1'),
      /the build failed on E2B: see the build log above, fix resources\/e2b\/template\.json/,
    ],
    ['a failed upload', new FileUploadError('Failed to upload file: Bad Gateway'), /could not upload the template's files/],
    [
      'no network',
      new TypeError('fetch failed', { cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }) }),
      /could not reach E2B's API/,
    ],
  ];
  for (const [what, error, advice] of cases) {
    it(`${what} becomes one line that says what to do`, () => {
      const message = templateBuildFailure(error, 'opencode-env');
      assert.ok(!message.includes('\n'), `one line: ${message}`);
      assert.match(message, /^could not build the E2B template "opencode-env": /);
      assert.match(message, advice);
    });
  }

  it('the SDK failing to reach E2B becomes a TemplateBuildError that says so', async () => {
    // Port 9 (discard) on loopback: nothing listens, so the first request is refused.
    const rejected: unknown = await buildTemplate({ name: 'x', apiKey: 'e2b_unit', apiUrl: 'http://127.0.0.1:9' }).then(
      () => assert.fail('built against nothing'),
      (thrown: unknown) => thrown,
    );
    assert.ok(rejected instanceof TemplateBuildError, `a TemplateBuildError: ${String(rejected)}`);
    assert.match(rejected.message, /could not reach E2B's API/);
  });
});
