import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { harborRolloutArguments, loadHarborTasks } from '../../src/core/harbor/dataset.js';
import { planDockerfile } from '../../src/core/harbor/dockerfile.js';
import { loadHarborTask } from '../../src/core/harbor/task.js';
import { rolloutRequestSchema } from '../../src/core/rollout/schema.js';

const examples = path.join(import.meta.dirname, '..', '..', 'resources', 'examples', 'harbor');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'harbor-task-'));

/** A Harbor task directory under the scratch dir: relative path -> content. */
function writeTask(name: string, files: Record<string, string>): string {
  const dir = path.join(scratch, name);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), content);
  }
  return dir;
}

const MINIMAL = { 'task.toml': 'version = "1.0"\n', 'instruction.md': 'Do it.\n', 'tests/test.sh': 'echo 1 > /logs/verifier/reward.txt\n' };

describe('Harbor tasks as run_rollout arguments', () => {
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('maps the text-processing example: instruction, /tests, test.sh, timeouts, the copied input, the oracle', async () => {
    const args = harborRolloutArguments(await loadHarborTask(path.join(examples, 'log-status-counts')));
    assert.equal(args.task_id, 'log-status-counts');
    assert.match(String(args.instruction), /status_counts\.txt/);
    assert.deepEqual(Object.keys(args.verifier_files as object).sort(), ['/tests/expected.txt', '/tests/test.sh']);
    assert.deepEqual(args.verify, ['bash /tests/test.sh']);
    assert.equal(args.agent_timeout_s, 300);
    assert.equal(args.verify_timeout_s, 60);
    assert.deepEqual(Object.keys(args.files as object), ['access.log'], 'COPY access.log /app/access.log lands in the workdir');
    assert.match(String(args.oracle_script), /uniq -c/);
    assert.equal(args.environment_needs, undefined, 'FROM python with WORKDIR and COPY needs nothing the host lacks');
    assert.ok(rolloutRequestSchema.safeParse(args).success, 'run_rollout accepts the arguments');
  });

  it("maps the bug-fix example's verifier env and COPY into the WORKDIR ('./')", async () => {
    const args = harborRolloutArguments(await loadHarborTask(path.join(examples, 'fix-median')));
    assert.deepEqual(args.verifier_env, { STATS_TEST_SEED: '7' });
    assert.deepEqual(Object.keys(args.files as object), ['stats.py']);
    assert.deepEqual(Object.keys(args.verifier_files as object).sort(), ['/tests/test.sh', '/tests/test_stats.py']);
    const spec = rolloutRequestSchema.parse({ ...args, agent: 'oracle' });
    assert.equal(spec.agent, 'oracle');
  });

  it('loads every task of a dataset directory, or the directory itself when it is one task', async () => {
    const all = await loadHarborTasks(examples);
    assert.deepEqual(
      all.map((t) => t.taskId),
      ['fix-median', 'log-status-counts'],
    );
    assert.equal(all[0]!.args.task_id, 'fix-median');
    const one = await loadHarborTasks(path.join(examples, 'fix-median'));
    assert.deepEqual(
      one.map((t) => t.taskId),
      ['fix-median'],
    );
    await assert.rejects(loadHarborTasks(writeTask('empty-dataset', { 'README.md': 'x' })), /no task\.toml/);
  });

  it('uses run_rollout defaults where task.toml says nothing, and needs nothing without a Dockerfile', async () => {
    const args = harborRolloutArguments(await loadHarborTask(writeTask('minimal', MINIMAL)));
    for (const key of ['agent_timeout_s', 'verify_timeout_s', 'verifier_env', 'files', 'oracle_script', 'environment_needs']) {
      assert.equal(args[key], undefined, `${key} is left out`);
    }
  });

  it('names the task, file and field of what is wrong', async () => {
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['no-instruction', { ...MINIMAL, 'instruction.md': '' }, /no-instruction\/instruction\.md: is empty/],
      ['no-test', { 'task.toml': '', 'instruction.md': 'x' }, /no-test\/tests\/test\.sh: missing/],
      ['bad-toml', { ...MINIMAL, 'task.toml': '[agent\ntimeout_sec = 1' }, /bad-toml\/task\.toml: is not valid TOML/],
      ['bad-field', { ...MINIMAL, 'task.toml': '[agent]\ntimeout_sec = "soon"\n' }, /bad-field\/task\.toml: agent\.timeout_sec: /],
      ['bad-env', { ...MINIMAL, 'task.toml': '[verifier]\nenv = { N = 3 }\n' }, /bad-env\/task\.toml: verifier\.env\.N: /],
      [
        'no-copy-source',
        { ...MINIMAL, 'environment/Dockerfile': 'FROM python:3.12\nCOPY gone.txt .\n' },
        /environment\/gone\.txt .*line 2.*missing/,
      ],
    ];
    for (const [name, files, expected] of cases) {
      await assert.rejects(loadHarborTask(writeTask(name, files)), expected, name);
    }
    await assert.rejects(loadHarborTask(path.join(scratch, 'nowhere')), /nowhere\/task\.toml: missing/);
  });

  it('says what an environment needs beyond the host: a docker_image, another base image, RUN steps', async () => {
    const image = await loadHarborTask(writeTask('image', { ...MINIMAL, 'task.toml': '[environment]\ndocker_image = "org/img:1"\n' }));
    assert.equal(image.environment.needs, 'the image org/img:1 ([environment].docker_image in task.toml)');
    const run = await loadHarborTask(
      writeTask('run', {
        ...MINIMAL,
        'environment/Dockerfile': 'FROM python:3.12-slim\n# tools\nRUN apt-get update && \\\n  apt-get install -y jq\n',
      }),
    );
    assert.equal(
      run.environment.needs,
      'the image python:3.12-slim built with `RUN apt-get update && apt-get install -y jq` (environment/Dockerfile line 3)',
    );
    assert.equal(harborRolloutArguments(run).environment_needs, run.environment.needs);
  });
});

describe('planDockerfile', () => {
  it('honours a plain base image, WORKDIR and COPY into it; ignores metadata instructions', () => {
    const plan = planDockerfile(
      'FROM docker.io/library/python:3.12-slim AS base\nLABEL a=b\nWORKDIR /app\nWORKDIR src\nCOPY --chown=1000 a.py b.py ./\nCOPY ["data", "/app/src/data/"]\nCMD ["bash"]\n',
    );
    assert.equal(plan.unmet, null);
    assert.equal(plan.baseImage, 'docker.io/library/python:3.12-slim');
    assert.deepEqual(
      plan.copies.map((c) => [c.sources, c.destination, c.intoDirectory]),
      [
        [['a.py', 'b.py'], '', true],
        [['data'], 'data', true],
      ],
    );
  });

  it('refuses what only an image can give, naming the first such line', () => {
    const cases: Array<[string, string]> = [
      ['FROM ghcr.io/org/tool:2\n', 'the image ghcr.io/org/tool:2 (environment/Dockerfile line 1)'],
      ['FROM ubuntu:24.04\nENV X=1\n', 'the image ubuntu:24.04 built with `ENV X=1` (environment/Dockerfile line 2)'],
      [
        'FROM debian\nWORKDIR /app\nCOPY a.txt /etc/a.txt\n',
        'the image debian built with `COPY a.txt /etc/a.txt` (environment/Dockerfile line 3)',
      ],
      ['FROM python:3\nCOPY --from=build /x .\n', 'the image python:3 built with `COPY --from=build /x .` (environment/Dockerfile line 2)'],
      ['FROM python:3 AS a\nFROM python:3\n', 'the image python:3 built with `FROM python:3` (environment/Dockerfile line 2)'],
      ['FROM python:3\nCOPY ../secret .\n', 'the image python:3 built with `COPY ../secret .` (environment/Dockerfile line 2)'],
    ];
    for (const [dockerfile, expected] of cases) assert.equal(planDockerfile(dockerfile).unmet, expected, dockerfile);
  });
});
