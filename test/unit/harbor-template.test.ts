import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Template } from 'e2b';
import { planDockerfile } from '../../src/core/harbor/dockerfile.js';
import { loadHarborTask } from '../../src/core/harbor/task.js';
import { packageRoot } from '../../src/paths.js';
import { harborTemplateBuilder, harborTemplateName, wantsOwnTemplate } from '../../src/sandbox/e2b/harbor-template.js';

const examples = path.join(packageRoot, 'resources', 'examples', 'harbor');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'harbor-template-'));
const installedOpencode = (
  JSON.parse(readFileSync(path.join(packageRoot, 'node_modules/opencode-ai/package.json'), 'utf8')) as { version: string }
).version;

/** A copy of an example task, to change without touching the original. */
function copyOf(task: string, as: string): string {
  const dir = path.join(scratch, as);
  cpSync(path.join(examples, task), dir, { recursive: true });
  return dir;
}

describe('E2B templates for Harbor tasks', () => {
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('names a template by its environment: the same files share one name, a changed file or image gets another', async () => {
    const original = (await loadHarborTask(path.join(examples, 'fix-median'))).environment;
    const name = await harborTemplateName(original);
    assert.match(name, /^opencode-env-harbor-[0-9a-f]{16}$/);
    // Another directory, another task name, the same environment: the same template.
    const copy = (await loadHarborTask(copyOf('fix-median', 'elsewhere'))).environment;
    assert.equal(await harborTemplateName(copy), name);
    // The instruction and the tests are not part of the environment.
    writeFileSync(path.join(scratch, 'elsewhere', 'instruction.md'), 'Something else.\n');
    assert.equal(await harborTemplateName((await loadHarborTask(path.join(scratch, 'elsewhere'))).environment), name);
    // A file of the build context is.
    const edited = copyOf('fix-median', 'edited');
    writeFileSync(path.join(edited, 'environment', 'stats.py'), '# changed\n');
    assert.notEqual(await harborTemplateName((await loadHarborTask(edited)).environment), name);
    assert.notEqual(await harborTemplateName({ ...original, dockerImage: 'python:3.13' }), name);
    const other = (await loadHarborTask(path.join(examples, 'log-status-counts'))).environment;
    assert.notEqual(await harborTemplateName(other), name);
  });

  it("builds the task's image, then opencode at the installed pin, the user, and the WORKDIR made the agent's", async () => {
    const environment = (await loadHarborTask(path.join(examples, 'fix-median'))).environment;
    assert.ok(wantsOwnTemplate(environment));
    const dockerfile = Template.toDockerfile(harborTemplateBuilder(environment));
    const lines = dockerfile.split('\n').filter(Boolean);
    assert.equal(lines[0], 'FROM python:3.11-slim', dockerfile);
    const copy = lines.findIndex((line) => /^COPY stats\.py/.test(line));
    const npm = lines.findIndex((line) => line === `RUN npm install -g opencode-ai@${installedOpencode}`);
    const chown = lines.findIndex((line) => line === 'RUN mkdir -p /app && chown -R user: /app');
    assert.ok(copy > 0 && npm > copy && chown > npm, `the task's steps, then the overlay, then the workdir: ${dockerfile}`);
    assert.ok(
      lines.some((line) => /command -v node/.test(line) && /apt-get install/.test(line)),
      `node installed where missing: ${dockerfile}`,
    );
    assert.deepEqual(lines.slice(-2), ['USER user', 'WORKDIR /app']);
    // The SDK's own serialisation, which it sends to E2B, has the COPY's files hashed from environment/.
    const { steps } = JSON.parse(await Template.toJSON(harborTemplateBuilder(environment))) as {
      steps: { type: string; args: string[]; filesHash?: string }[];
    };
    const copies = steps.filter((step) => step.type === 'COPY');
    assert.equal(copies.length, 1);
    assert.match(copies[0]?.filesHash ?? '', /^[0-9a-f]{64}$/);
  });

  it('starts from task.toml docker_image when there is one, and wants no template without an environment', async () => {
    const image = { dir: null, dockerImage: 'ghcr.io/org/task:1', dockerfile: null };
    assert.ok(wantsOwnTemplate(image));
    const dockerfile = Template.toDockerfile(harborTemplateBuilder(image));
    assert.equal(dockerfile.split('\n')[0], 'FROM ghcr.io/org/task:1');
    assert.deepEqual(dockerfile.split('\n').filter(Boolean).slice(-2), ['USER user', 'WORKDIR /home/user']);
    assert.equal(wantsOwnTemplate({ dir: null, dockerImage: null, dockerfile: null }), false);
  });

  it('resolves WORKDIR as Docker does: the first against /, later relative ones against the one before', () => {
    assert.equal(planDockerfile('FROM python:3.12\nWORKDIR app\n').workdir, '/app');
    assert.equal(planDockerfile('FROM python:3.12\nWORKDIR /srv\nWORKDIR ./code/../src\n').workdir, '/srv/src');
    assert.equal(planDockerfile('FROM python:3.12\n').workdir, null);
  });
});
