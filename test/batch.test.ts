// `opencode-env batch` end to end: the built CLI runs a JSONL dataset with the scripted model on the local
// backend; results.jsonl and summary.json, resume after a SIGKILL mid-batch (nothing lost, nothing twice),
// and retries only for infrastructure failures (an upstream that is down), never for a wrong answer or a budget.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { cliPath, makeHomeDir, makeSystemTempDir, removeDir, repoRoot, waitFor } from './helpers/server.js';

const run = promisify(execFile);

function readLines(file: string): Array<Record<string, any>> {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

function fizzbuzzTask(taskId: string, scripted: ScriptedLlm, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...exampleTask(), task_id: taskId, base_url: scripted.url, model: 'scripted-model', ...extra };
}

describe('opencode-env batch', () => {
  let good: ScriptedLlm;
  let wrong: ScriptedLlm;
  let down: ScriptedLlm;
  let home: string;
  let scratch: string;
  const dirs: string[] = [];

  /** Fresh data and sandbox dirs per batch, so traces can be counted per run. */
  function batchEnv(): { env: NodeJS.ProcessEnv; dataDir: string } {
    const dataDir = makeSystemTempDir('batch-data');
    const sandboxDir = makeSystemTempDir('batch-sandboxes');
    dirs.push(dataDir, sandboxDir);
    const env = {
      PATH: process.env.PATH,
      HOME: home,
      OPENCODE_ENV_SANDBOX: 'local',
      OPENCODE_ENV_SANDBOX_DIR: sandboxDir,
      OPENCODE_ENV_DATA_DIR: dataDir,
    };
    return { env, dataDir };
  }

  function dataset(name: string, tasks: Array<Record<string, unknown>>): string {
    const file = path.join(scratch, `${name}.jsonl`);
    writeFileSync(file, tasks.map((task) => JSON.stringify(task)).join('\n') + '\n');
    return file;
  }

  before(async () => {
    good = await startScripted(exampleScript('script.json'));
    wrong = await startScripted(exampleScript('script-wrong.json'));
    down = await startScripted({ turns: [{ text: 'never sent' }], error: { status: 500, message: 'the model server is down' } });
    home = makeHomeDir();
    scratch = makeSystemTempDir('batch');
    dirs.push(home, scratch);
  });
  after(async () => {
    await Promise.all([good?.close(), wrong?.close(), down?.close()]);
    for (const dir of dirs) removeDir(dir);
  });

  it('runs 2 tasks x 2 samples at concurrency 2: 4 result lines with reward 1, a summary, and a rerun does nothing', async () => {
    const { env } = batchEnv();
    const file = dataset('two', [fizzbuzzTask('fizz-a', good), fizzbuzzTask('fizz-b', good)]);
    const out = path.join(scratch, 'out-two');
    const args = [cliPath, 'batch', file, '--samples', '2', '--concurrency', '2', '--out', out];
    const { stdout, stderr } = await run(process.execPath, args, { env, timeout: 300_000 });
    const lines = readLines(path.join(out, 'results.jsonl'));
    assert.equal(lines.length, 4, stderr);
    assert.deepEqual(lines.map((l) => `${l.task_id}/${l.sample}`).sort(), ['fizz-a/0', 'fizz-a/1', 'fizz-b/0', 'fizz-b/1']);
    for (const line of lines) {
      assert.equal(line.reward, 1, JSON.stringify(line));
      assert.equal(line.group_id, line.task_id);
      assert.equal(line.error_kind, null);
      assert.equal(line.attempts, 1);
      assert.equal(line.llm_calls, 3, 'three agent steps in the script');
      assert.ok(line.prompt_tokens > 0 && line.completion_tokens > 0, 'token counts from usage');
      assert.match(line.rollout_id, /^rollout-/);
      assert.ok(line.timings.agent > 0, 'phase timings');
    }
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(summary.samples, 2);
    assert.deepEqual(Object.keys(summary.tasks), ['fizz-a', 'fizz-b']);
    assert.equal(summary.overall.rollouts, 4);
    assert.equal(summary.overall.mean_reward, 1);
    assert.deepEqual(summary.overall.pass_at, { 'pass@1': 1, 'pass@2': 1 });
    assert.equal(summary.overall.error_rate, 0);
    assert.equal(summary.run.rollouts_run, 4);
    assert.ok(summary.run.cpu_self_s > 0 && summary.run.wall_s > 0, 'cost measured');
    assert.match(stdout, /^overall \(2 tasks\) +4 +1\.000 +1\.000 +1\.000 /m);
    assert.match(stderr, /^batch 4\/4 /m, 'a final progress line');
    // The training data for just this batch: one sequence per rollout (each is one faithful opencode session).
    const sequences = readLines(path.join(out, 'tokens.jsonl'));
    assert.equal(sequences.length, 4, stderr);
    assert.deepEqual(new Set(sequences.map((q) => q.rollout_id)), new Set(lines.map((l) => l.rollout_id)));
    for (const q of sequences) {
      assert.equal(q.loss_mask.length, q.response_ids.length, 'a mask entry per response token');
      assert.equal(q.group_id, q.task_id);
      assert.equal(q.reward, 1);
    }
    assert.match(stderr, /4 training sequences from 4 rollouts .* \(0 prefix breaks, 0 flagged/);

    // Run again: without --resume it refuses to mix batches; with it, there is nothing left to do.
    const refused = await run(process.execPath, args, { env }).catch((error: { code: number; stderr: string }) => error);
    assert.equal((refused as { code?: number }).code, 1);
    assert.match((refused as { stderr: string }).stderr, /already holds 4 results: add --resume/);
    const before = statSync(path.join(out, 'summary.json')).mtimeMs;
    const { stderr: again } = await run(process.execPath, [...args, '--resume'], { env, timeout: 60_000 });
    assert.match(again, /4 already done/);
    assert.match(again, /nothing to do/);
    assert.equal(readLines(path.join(out, 'results.jsonl')).length, 4);
    assert.equal(statSync(path.join(out, 'summary.json')).mtimeMs, before, 'summary.json untouched');
  });

  it('resumes after a SIGKILL mid-batch: every (task, sample) pair exactly once', async () => {
    const { env } = batchEnv();
    const file = dataset('resume', [fizzbuzzTask('fizz-a', good), fizzbuzzTask('fizz-b', good)]);
    const out = path.join(scratch, 'out-resume');
    const resultsFile = path.join(out, 'results.jsonl');
    const args = [cliPath, 'batch', file, '--samples', '2', '--concurrency', '1', '--out', out];
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await waitFor(() => readLines(resultsFile).length >= 1, 240_000, `a first result line (${stderr})`);
      assert.ok(readLines(resultsFile).length < 4, 'killed mid-batch');
      child.kill('SIGKILL');
      await exited;
    } finally {
      child.kill('SIGKILL');
    }
    const kept = readLines(resultsFile).length;
    assert.ok(kept >= 1 && kept < 4, `${kept} lines survived the kill`);

    const { stderr: resumed } = await run(process.execPath, [...args, '--resume'], { env, timeout: 300_000 });
    assert.match(resumed, new RegExp(`${kept} already done`));
    const lines = readLines(resultsFile);
    const keys = lines.map((l) => `${l.task_id}/${l.sample}`);
    assert.equal(new Set(keys).size, keys.length, `no pair twice: ${keys.join(', ')}`);
    assert.deepEqual(keys.sort(), ['fizz-a/0', 'fizz-a/1', 'fizz-b/0', 'fizz-b/1']);
    assert.ok(
      lines.every((l) => l.reward === 1),
      'all rewarded',
    );
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(summary.overall.rollouts, 4, 'the summary covers the lines of both runs');
    assert.equal(summary.run.rollouts_run, 4 - kept, 'the resumed run ran only what was missing');
  });

  it('on Ctrl-C cancels the rollouts in flight (traces stored as cancelled), records none of them, and --resume reruns them', async () => {
    const { env } = batchEnv();
    const file = dataset('interrupt', [fizzbuzzTask('fizz-a', good), fizzbuzzTask('fizz-b', good)]);
    const out = path.join(scratch, 'out-interrupt');
    const args = [cliPath, 'batch', file, '--samples', '2', '--concurrency', '2', '--out', out, '--progress-interval', '1'];
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor(() => /\| 2 running \|/.test(stderr), 120_000, `two rollouts running (${stderr})`);
      child.kill('SIGINT');
      assert.equal(await exited, 130, stderr);
    } finally {
      child.kill('SIGKILL');
    }
    assert.match(stderr, /batch: stopped; \d+ rollouts recorded by this run, \d+ left: run again with --resume/);
    const kept = readLines(path.join(out, 'results.jsonl'));
    assert.ok(kept.length < 4, `${kept.length} lines`);
    assert.ok(
      kept.every((line) => line.error_kind === null),
      'no cancelled rollout is recorded as done',
    );
    const { stdout: listing } = await run(process.execPath, [cliPath, 'traces', 'list'], { env });
    assert.match(listing, /error=cancelled/, 'the cancelled rollouts stored their traces');

    await run(process.execPath, [...args, '--resume'], { env, timeout: 300_000 });
    const keys = readLines(path.join(out, 'results.jsonl')).map((l) => `${l.task_id}/${l.sample}`);
    assert.deepEqual(keys.sort(), ['fizz-a/0', 'fizz-a/1', 'fizz-b/0', 'fizz-b/1']);
  });

  it('retries an upstream that is down, R times, but never a wrong answer or a budget', async () => {
    const { env, dataDir } = batchEnv();
    const file = dataset('retries', [
      fizzbuzzTask('down', down),
      fizzbuzzTask('wrong', wrong),
      fizzbuzzTask('budget', good, { max_llm_calls: 1 }),
    ]);
    const out = path.join(scratch, 'out-retries');
    const { stderr } = await run(
      process.execPath,
      [cliPath, 'batch', file, '--samples', '1', '--concurrency', '3', '--out', out, '--retries', '2', '--retry-delay-ms', '10'],
      { env, timeout: 400_000 },
    );
    const byTask = Object.fromEntries(readLines(path.join(out, 'results.jsonl')).map((l) => [l.task_id, l]));
    assert.deepEqual(Object.keys(byTask).sort(), ['budget', 'down', 'wrong'], stderr);

    assert.equal(byTask.down!.error_kind, 'upstream', byTask.down!.error);
    assert.equal(byTask.down!.reward, null);
    assert.equal(byTask.down!.attempts, 3, 'the first attempt and 2 retries');
    assert.equal((stderr.match(/retrying down sample 0/g) ?? []).length, 2, stderr);

    assert.equal(byTask.wrong!.reward, 0);
    assert.equal(byTask.wrong!.error_kind, null);
    assert.equal(byTask.wrong!.attempts, 1, 'a wrong answer is not retried');

    assert.equal(byTask.budget!.budget_exhausted, 'max_llm_calls');
    assert.equal(byTask.budget!.error_kind, null);
    assert.equal(byTask.budget!.attempts, 1, 'a budget is not retried');

    // Each attempt is its own rollout with its own trace.
    const { stdout: listing } = await run(process.execPath, [cliPath, 'traces', 'list'], {
      env: { ...env, OPENCODE_ENV_DATA_DIR: dataDir },
    });
    const tracesOf = (task: string) => listing.split('\n').filter((line) => line.split('\t')[2] === task).length;
    assert.equal(tracesOf('down'), 3);
    assert.equal(tracesOf('wrong'), 1);
    assert.equal(tracesOf('budget'), 1);

    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.deepEqual(summary.tasks.down.errors, { upstream: 1 });
    assert.equal(summary.overall.retries, 2);
    assert.equal(summary.run.rollouts_run, 5);
  });

  it('runs the Harbor example tasks: with the oracle agent, and with the scripted model', async () => {
    const { env } = batchEnv();
    const examples = path.join(repoRoot, 'resources/examples/harbor');
    const oracleOut = path.join(scratch, 'out-harbor-oracle');
    const { stderr } = await run(
      process.execPath,
      [cliPath, 'batch', examples, '--samples', '2', '--concurrency', '2', '--out', oracleOut, '--agent', 'oracle'],
      { env, timeout: 300_000 },
    );
    assert.match(stderr, /batch: 2 tasks \(harbor\) x 2 samples = 4 rollouts/);
    const oracle = readLines(path.join(oracleOut, 'results.jsonl'));
    assert.deepEqual(oracle.map((l) => `${l.task_id}/${l.sample}`).sort(), [
      'fix-median/0',
      'fix-median/1',
      'log-status-counts/0',
      'log-status-counts/1',
    ]);
    assert.ok(
      oracle.every((l) => l.reward === 1 && l.llm_calls === 0),
      JSON.stringify(oracle),
    );

    // One task directory is a dataset of one task.
    const task = path.join(examples, 'fix-median');
    const scriptedOut = path.join(scratch, 'out-harbor-scripted');
    await run(
      process.execPath,
      [
        cliPath,
        'batch',
        task,
        '--samples',
        '1',
        '--concurrency',
        '1',
        '--out',
        scriptedOut,
        '--scripted-llm',
        path.join(task, 'scripted-model.json'),
      ],
      { env, timeout: 300_000 },
    );
    const [scripted] = readLines(path.join(scriptedOut, 'results.jsonl'));
    assert.equal(scripted?.task_id, 'fix-median');
    assert.equal(scripted?.reward, 1, JSON.stringify(scripted));
    assert.ok(scripted.llm_calls > 0, 'the model did the work');
  });

  it('refuses an invalid dataset before running anything, naming the line and field', async () => {
    const { env } = batchEnv();
    const file = path.join(scratch, 'bad.jsonl');
    writeFileSync(
      file,
      `${JSON.stringify(fizzbuzzTask('ok', good))}\n${JSON.stringify({ task_id: 'bad', instruction: 'x', max_tokens_cap: -1 })}\n{"instruction":"no id"}\n`,
    );
    const out = path.join(scratch, 'out-bad');
    const failed = await run(process.execPath, [cliPath, 'batch', file, '--samples', '1', '--concurrency', '1', '--out', out], {
      env,
    }).catch((error: { code: number; stderr: string }) => error);
    assert.equal((failed as { code?: number }).code, 1);
    const text = (failed as { stderr: string }).stderr;
    assert.match(text, /bad\.jsonl:2: max_tokens_cap: /);
    assert.match(text, /bad\.jsonl:3: task_id: required/);
    assert.ok(!existsSync(path.join(out, 'results.jsonl')), 'nothing ran');
  });
});
