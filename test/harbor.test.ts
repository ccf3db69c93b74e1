import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { cliPath, makeHomeDir, makeSystemTempDir, removeDir, repoRoot } from './helpers/server.js';

const execFileAsync = promisify(execFile);
const examples = path.join(repoRoot, 'resources', 'examples', 'harbor');

/** A Harbor task directory under `root`: relative path -> content. */
function writeTask(root: string, name: string, files: Record<string, string>): string {
  const dir = path.join(root, name);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), content);
  }
  return dir;
}

// Harbor tasks through the built CLI on the local backend: the oracle agent, the scripted model, and the refusal of an
// environment this host cannot provide.
describe('Harbor tasks (opencode-env rollout --harbor)', () => {
  let dataDir: string;
  let sandboxRoot: string;
  let tasksDir: string;
  let home: string;
  let env: NodeJS.ProcessEnv;

  /** Runs the CLI to its end (exit code included: a failing rollout exits 1). */
  async function rollout(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, [cliPath, 'rollout', ...args], {
        cwd: repoRoot,
        env,
        timeout: 300_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      if (typeof failed.code !== 'number') throw error;
      return { code: failed.code, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  before(() => {
    dataDir = makeSystemTempDir('harbor-data');
    sandboxRoot = makeSystemTempDir('harbor-sandboxes');
    tasksDir = makeSystemTempDir('harbor-tasks');
    home = makeHomeDir();
    env = { PATH: process.env.PATH, HOME: home, OPENCODE_ENV_DATA_DIR: dataDir, OPENCODE_ENV_SANDBOX_DIR: sandboxRoot };
  });
  after(() => {
    for (const dir of [dataDir, sandboxRoot, tasksDir, home]) removeDir(dir);
  });

  for (const task of ['log-status-counts', 'fix-median']) {
    it(`validates the ${task} example with the oracle agent: reward 1`, async () => {
      const run = await rollout('--harbor', path.join(examples, task), '--agent', 'oracle');
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^reward: +1\.00$/m);
      assert.match(run.stdout, /^turns: +0 LLM turns/m, 'no model was called');
    });
  }

  it('the unsolved bug-fix task scores 0: the oracle is what makes it pass', async () => {
    const run = await rollout('--harbor', path.join(examples, 'fix-median'), '--agent', 'oracle', '--json');
    const solved = JSON.parse(run.stdout) as { reward: number; files: Record<string, string>; verify_results: { cmd: string }[] };
    assert.equal(solved.reward, 1);
    assert.deepEqual(
      solved.verify_results.map((r) => r.cmd),
      ['bash /tests/test.sh'],
    );
    const unsolved = writeTask(tasksDir, 'median-unsolved', {
      'task.toml': '[verifier]\nenv = { STATS_TEST_SEED = "7" }\n',
      'instruction.md': 'Leave it.',
      'environment/Dockerfile': 'FROM python:3.11-slim\nWORKDIR /app\nCOPY stats.py ./\n',
      'environment/stats.py': 'def median(values):\n    return values[len(values) // 2]\n',
      'tests/test.sh': '#!/bin/bash\nif python3 /tests/t.py; then echo 1; else echo 0; fi > /logs/verifier/reward.txt\n',
      'tests/t.py': 'import os\nfrom stats import median\nint(os.environ["STATS_TEST_SEED"])\nassert median([4, 1, 3, 2]) == 2.5\n',
      'solution/solve.sh': 'true\n',
    });
    const failed = await rollout('--harbor', unsolved, '--agent', 'oracle');
    assert.equal(failed.code, 0, failed.stderr);
    assert.match(failed.stdout, /^reward: +0\.00$/m);
  });

  it('solves the bug-fix example with the scripted model: reward 1', async () => {
    const task = path.join(examples, 'fix-median');
    const run = await rollout('--harbor', task, '--scripted-llm', path.join(task, 'scripted-model.json'));
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^reward: +1\.00$/m);
    assert.match(run.stdout, /^turns: +4 LLM turns \(3 agent steps\)$/m);
  });

  it('keeps /tests from the agent, and gives the verifier its env, /tests and /logs/verifier', async () => {
    const task = writeTask(tasksDir, 'hidden-tests', {
      'task.toml': '[verifier]\nenv = { EXPECTED = "ok" }\n',
      'instruction.md': 'Write ok to answer.txt.',
      'tests/test.sh':
        '#!/bin/bash\nif [ ! -e saw-tests ] && [ "$(cat answer.txt)" = "$EXPECTED" ] && [ "$(cat /tests/data/x)" = x ]; then r=1; else r=0; fi\n' +
        'echo $r > /logs/verifier/reward.txt\n',
      'tests/data/x': 'x',
      // The agent looks for the tests and tries to forge a reward where Harbor's verifier writes it.
      'solution/solve.sh':
        'ls /tests >/dev/null 2>&1 && touch saw-tests\nmkdir -p /logs/verifier 2>/dev/null && echo 1 > /logs/verifier/reward.txt\necho ok > answer.txt\n',
    });
    const run = await rollout('--harbor', task, '--agent', 'oracle', '--json');
    const result = JSON.parse(run.stdout) as { reward: number; files: Record<string, string> };
    assert.deepEqual(Object.keys(result.files).sort(), ['answer.txt'], 'the agent saw no /tests');
    assert.equal(result.reward, 1);
  });

  it('refuses up front a task whose environment needs more than this host, naming the task and the need', async () => {
    const task = writeTask(tasksDir, 'needs-jq', {
      'task.toml': '',
      'instruction.md': 'Pretty-print data.json with jq.',
      'environment/Dockerfile': 'FROM python:3.12-slim\nRUN apt-get update && apt-get install -y jq\n',
      'tests/test.sh': 'echo 1 > /logs/verifier/reward.txt\n',
      'solution/solve.sh': 'true\n',
    });
    const run = await rollout('--harbor', task, '--agent', 'oracle');
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /task needs-jq needs the image python:3\.12-slim built with `RUN apt-get update && apt-get install -y jq` \(environment\/Dockerfile line 2\); the local backend runs on this host's tools — use E2B/,
    );
    assert.doesNotMatch(run.stderr, /phase: sandbox/, 'decided before any sandbox was made');
  });

  it("refuses a workdir of the image's (E2B's) up front: the local backend's is fixed", async () => {
    const file = path.join(tasksDir, 'workdir-task.json');
    writeFileSync(
      file,
      JSON.stringify({ task_id: 'in-app', instruction: 'x', verify: ['true'], workdir: '/app', agent: 'oracle', oracle_script: 'true' }),
    );
    const run = await rollout('--task', file);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /task in-app: workdir \/app needs a backend with templates \(E2B\); the local backend's workdir is fixed/);
  });
});
