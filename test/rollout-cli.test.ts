import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { cliPath, makeHomeDir, makeSystemTempDir, removeDir, repoRoot } from './helpers/server.js';

const run = promisify(execFile);

// The README's main job, exactly as documented, plus the trace commands that read what it stored.
describe('opencode-env rollout (the README main job) and traces', () => {
  let dataDir: string;
  let sandboxRoot: string;
  let home: string;
  let env: NodeJS.ProcessEnv;
  before(() => {
    dataDir = makeSystemTempDir('cli-data');
    sandboxRoot = makeSystemTempDir('cli-sandboxes');
    home = makeHomeDir();
    env = { PATH: process.env.PATH, HOME: home, OPENCODE_ENV_DATA_DIR: dataDir, OPENCODE_ENV_SANDBOX_DIR: sandboxRoot };
  });
  after(() => {
    for (const dir of [dataDir, sandboxRoot, home]) removeDir(dir);
  });

  it('runs the fizzbuzz example offline and prints reward 1.00 and the turn count', async () => {
    const packageJson = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
    const script: string = packageJson.scripts['rollout:example'];
    assert.match(script, /^node dist\/cli\.js rollout /, 'the npm script runs the built CLI');
    const args = script.replace(/^node dist\/cli\.js /, '').split(' ');
    const { stdout, stderr } = await run(process.execPath, [cliPath, ...args], { cwd: repoRoot, env, timeout: 180_000 });
    assert.match(stdout, /^reward: +1\.00$/m);
    assert.match(stdout, /^turns: +4 LLM turns \(3 agent steps\)$/m);
    assert.match(stdout, /^files: +fizzbuzz\.py$/m);
    assert.match(stderr, /^\[ *\d+\.\d s\] phase: agent$/m, 'progress a person can read');
    assert.doesNotMatch(stderr, /^\{/m, 'no JSON log lines mixed in');
  });

  it('lists and exports the stored traces as JSONL for training', async () => {
    const { stdout: listing } = await run(process.execPath, [cliPath, 'traces', 'list'], { env });
    const [line] = listing.trim().split('\n');
    assert.match(line!, /^rollout-\S+\t\S+\tfizzbuzz\treward=1\tturns=4$/);

    const out = path.join(dataDir, 'export.jsonl');
    const { stderr } = await run(process.execPath, [cliPath, 'traces', 'export', '--out', out], { env });
    assert.match(stderr, /exported 1 rollouts/);
    const [example] = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(example.task_id, 'fizzbuzz');
    assert.equal(example.reward, 1);
    assert.equal(example.turns.length, 3, 'agent turns only');
    for (const turn of example.turns) {
      assert.ok(turn.messages.length >= 2);
      assert.ok(turn.completion_token_ids.length > 0);
      assert.equal(turn.completion_token_ids.length, turn.per_token_logps.length);
      assert.ok(turn.prompt_token_ids.length > 0);
    }

    const rolloutId = line!.split('\t')[0]!;
    const { stdout: shown } = await run(process.execPath, [cliPath, 'traces', 'show', rolloutId], { env });
    assert.equal(JSON.parse(shown).rollout_id, rolloutId);
  });

  it('rejects a task file with a bad field, naming it', async () => {
    const bad = path.join(dataDir, 'bad-task.json');
    writeFileSync(bad, JSON.stringify({ instruction: 'x', max_tokens_cap: -1 }));
    await assert.rejects(
      run(process.execPath, [cliPath, 'rollout', '--task', bad, '--scripted-llm', 'resources/examples/fizzbuzz/script.json'], {
        cwd: repoRoot,
        env,
      }),
      (error: { stderr: string; code: number }) => /max_tokens_cap/.test(error.stderr) && error.code === 1,
    );
  });

  it('with --json prints the full result as JSON and logs JSON lines', async () => {
    const task = path.join(dataDir, 'setup-fails.json');
    writeFileSync(task, JSON.stringify({ instruction: 'x', task_id: 'json-mode', setup: ['echo nope >&2; exit 5'], verify: ['true'] }));
    const failed = await run(
      process.execPath,
      [cliPath, 'rollout', '--json', '--task', task, '--scripted-llm', 'resources/examples/fizzbuzz/script.json'],
      { cwd: repoRoot, env },
    ).catch((error: { stdout: string; stderr: string; code: number }) => error);
    assert.equal((failed as { code?: number }).code, 1, 'a rollout with an error exits 1');
    const result = JSON.parse(failed.stdout);
    assert.equal(result.task_id, 'json-mode');
    assert.equal(result.error_kind, 'setup');
    assert.equal(result.reward, null);
    const lines = failed.stderr.trim().split('\n');
    assert.ok(lines.length > 0 && lines.every((line) => JSON.parse(line).name === 'opencode-env'), failed.stderr);
    assert.ok(lines.some((line) => JSON.parse(line).progress === 'phase: setup'));
  });
});
