// `opencode-env traces export --format atif` on a real rollout: the scripted model through the built server and
// real opencode, then the export writes DIR/<rollout_id>/trajectory.json in Harbor's ATIF.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { atifProblems } from './helpers/atif-validate.js';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';
import { cliPath, makeTempDir, removeDir, repoRoot, startServer, traceTurns, type RunningServer } from './helpers/server.js';

const run = promisify(execFile);

describe('traces export --format atif', () => {
  let server: RunningServer;
  let llm: ScriptedLlm;
  let outDir: string;
  before(async () => {
    llm = await startScripted(exampleScript('script.json'));
    server = await startServer();
    outDir = makeTempDir('atif-export');
  });
  after(async () => {
    await server?.close();
    await llm?.close();
    if (outDir) removeDir(outDir);
  });

  it('writes a valid trajectory with the agent steps, the write call and its result, and the recorded token ids', async () => {
    const result = await server.callOk('run_rollout', { ...exampleTask(), base_url: llm.url, model: 'scripted-model' });
    assert.equal(result.reward, 1, JSON.stringify(result.error));
    const agentTurns = traceTurns(server.dataDir, result.rollout_id).filter((t) => t.kind === 'agent');

    const env = { PATH: process.env.PATH, HOME: server.home, OPENCODE_ENV_DATA_DIR: server.dataDir };
    const { stderr } = await run(process.execPath, [cliPath, 'traces', 'export', '--format', 'atif', '--out', outDir], {
      env,
      timeout: 60_000,
    });
    assert.match(stderr, /exported 1 trajectories/);
    const trajectory = JSON.parse(readFileSync(path.join(outDir, result.rollout_id, 'trajectory.json'), 'utf8'));
    assert.deepEqual(atifProblems(trajectory), [], 'valid ATIF v1.4');

    const opencodeVersion = JSON.parse(readFileSync(path.join(repoRoot, 'node_modules/opencode-ai/package.json'), 'utf8')).version;
    assert.deepEqual(
      { name: trajectory.agent.name, version: trajectory.agent.version, model_name: trajectory.agent.model_name },
      { name: 'opencode', version: opencodeVersion, model_name: 'scripted-model' },
    );
    assert.equal(trajectory.session_id, result.rollout_id);
    assert.equal(trajectory.extra.reward, 1);

    const agentSteps = trajectory.steps.filter((s: any) => s.source === 'agent');
    assert.equal(agentSteps.length, 3, 'three scripted agent steps (the title call left out)');
    assert.equal(agentTurns.length, 3, 'the trace has three agent turns');
    assert.ok(
      trajectory.steps.some((s: any) => s.source === 'user' && s.message.includes('fizzbuzz')),
      'the instruction is a user step',
    );
    assert.deepEqual(
      agentSteps.map((s: any) => s.message),
      agentTurns.map((t) => t.response.content),
      "each agent step's message is its response",
    );

    const [write, bash, final] = agentSteps;
    assert.equal(write.tool_calls.length, 1, 'one tool call in the first step');
    assert.equal(write.tool_calls[0].function_name, 'write');
    assert.match(write.tool_calls[0].arguments.filePath, /fizzbuzz\.py$/);
    assert.equal(write.observation.results.length, 1, 'the write has its result');
    assert.equal(write.observation.results[0].source_call_id, write.tool_calls[0].tool_call_id);
    assert.match(write.observation.results[0].content, /wrote|success/i, 'opencode reported the write');
    assert.equal(bash.tool_calls[0].function_name, 'bash');
    assert.match(bash.observation.results[0].content, /98\nFizz\nBuzz/, 'the bash result holds the program output (its last lines)');
    assert.equal(final.tool_calls, undefined, 'the final answer calls no tool');

    agentSteps.forEach((step: any, i: number) => {
      const turn = agentTurns[i]!;
      assert.deepEqual(step.metrics.completion_token_ids, turn.completion_token_ids, `step ${i + 1}: the recorded completion ids`);
      assert.deepEqual(step.metrics.prompt_token_ids, turn.prompt_token_ids, `step ${i + 1}: the recorded prompt ids`);
      assert.deepEqual(step.metrics.logprobs, turn.per_token_logps, `step ${i + 1}: the recorded logprobs`);
    });
    const sum = (key: string) => agentSteps.reduce((total: number, s: any) => total + (s.metrics[key] ?? 0), 0);
    assert.equal(trajectory.final_metrics.total_prompt_tokens, sum('prompt_tokens'));
    assert.equal(trajectory.final_metrics.total_completion_tokens, sum('completion_tokens'));
    assert.ok(trajectory.final_metrics.total_completion_tokens > 0, 'completion tokens counted');
    assert.equal(trajectory.final_metrics.total_steps, trajectory.steps.length);

    // Without --out there is nowhere to put the files.
    await assert.rejects(run(process.execPath, [cliPath, 'traces', 'export', '--format', 'atif'], { env }), /give --out DIR/);
  });
});
