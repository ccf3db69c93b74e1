// The conformance suite every sandbox backend passes, through the real server over MCP stdio: persistent Python
// (execute_python's semantics) and full rollouts of the real opencode with the scripted model. test/conformance.test.ts
// runs it against the local backend and against E2B (the offline stand-in); what only one backend promises is tested
// beside that backend (local-sandbox.test.ts, e2b-sandbox.test.ts, execute-python.test.ts).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LoggingMessageNotificationSchema, ResourceListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { tokenize } from '../../src/scripted-llm/fake-tokens.js';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './scripted.js';
import { errorText, startServer, type RunningServer } from './server.js';

/** What a backend under test needs around the server: its environment, and how to look at its sandboxes. */
export interface BackendFixture {
  /** Server environment selecting and configuring the backend. */
  env: Record<string, string>;
  /** How many of the backend's sandboxes are still alive for `server`. */
  liveSandboxes(server: RunningServer): Promise<number>;
  /** Whether the sandbox was created with internet access, where the backend has that setting. */
  internetAccessAsked?(sandboxId: string): boolean | undefined;
  tearDown(): Promise<void>;
}

export interface BackendTarget {
  name: string;
  backend: 'local' | 'e2b';
  setUp(): Promise<BackendFixture>;
}

export function backendConformance(target: BackendTarget): void {
  describe(`backend conformance: ${target.name}`, () => {
    describe('execute_python over MCP stdio', () => {
      let server: RunningServer;
      let fixture: BackendFixture;
      before(async () => {
        fixture = await target.setUp();
        server = await startServer({ env: fixture.env });
      });
      after(async () => {
        await server.close();
        await fixture.tearDown();
      });

      it('runs in a sandbox of this backend, and reset gives a fresh one', async () => {
        await run('before_reset = 1');
        const state = await server.callOk('get_state');
        assert.equal(state.sandbox_backend, target.backend);
        assert.equal(state.python_running, true);
        assert.equal(typeof state.sandbox_id, 'string');
        await server.callOk('reset', {});
        assert.equal((await run("'before_reset' in globals()")).stdout, 'False\n');
        assert.notEqual((await server.callOk('get_state')).sandbox_id, state.sandbox_id, 'a new sandbox');
      });

      const run = (code: string, extra: Record<string, unknown> = {}) => server.callOk('execute_python', { code, ...extra });

      it('keeps variables, imports and functions between calls', async () => {
        await run('import math\ncounter = 40\ndef bump(n):\n    return n + 1');
        const result = await run('counter = bump(counter) + 1\nprint(counter, math.floor(2.7))');
        assert.equal(result.stdout, '42 2\n');
        assert.equal(result.stderr, '');
        assert.equal(result.exit_code, 0);
        assert.equal(result.state_lost, false);
      });

      it('shows the value of a final expression like a REPL, and nothing for None', async () => {
        assert.equal((await run('x = 7\nx * 6')).stdout, '42\n');
        assert.equal((await run("{'a': [1, 'two']}")).stdout, "{'a': [1, 'two']}\n");
        assert.equal((await run('None')).stdout, '');
        assert.equal((await run('y = 3')).stdout, '');
      });

      it('reports an exception with exit code 1 and a traceback, keeping output printed before it', async () => {
        const result = await run("print('before')\ndef fail():\n    raise ValueError('boom')\nfail()");
        assert.equal(result.exit_code, 1);
        assert.equal(result.stdout, 'before\n');
        assert.match(result.stderr, /Traceback \(most recent call last\)/);
        assert.match(result.stderr, /line 3, in fail/);
        assert.match(result.stderr, /ValueError: boom\n$/);
        assert.doesNotMatch(result.stderr, /driver\.py/, 'driver frames are hidden');
      });

      it('reports a syntax error without running anything', async () => {
        const result = await run("marker = 'set'\nprint('unclosed");
        assert.equal(result.exit_code, 1);
        assert.match(result.stderr, /SyntaxError/);
        assert.match((await run("'marker' in globals()")).stdout, /False/);
      });

      it('passes through the code given to sys.exit and keeps the interpreter', async () => {
        await run('kept = 5');
        assert.equal((await run('import sys\nsys.exit(3)')).exit_code, 3);
        assert.equal((await run('import sys\nsys.exit()')).exit_code, 0);
        assert.equal((await run('kept')).stdout, '5\n');
      });

      it('captures output of subprocesses and native writes, with empty stdin', async () => {
        const result = await run(
          "import os, subprocess\nos.system('echo from-shell')\nos.write(2, b'raw-stderr\\n')\nsubprocess.run(['echo', 'from-subprocess'])",
        );
        assert.match(result.stdout, /from-shell\n/);
        assert.match(result.stdout, /from-subprocess/);
        assert.equal(result.stderr, 'raw-stderr\n');
        const input = await run('input()');
        assert.equal(input.exit_code, 1);
        assert.match(input.stderr, /EOFError/);
      });

      it('supports top-level await', async () => {
        const result = await run("import asyncio\nawait asyncio.sleep(0.01)\n'awaited'");
        assert.equal(result.stdout, "'awaited'\n");
      });

      it('interrupts code that exceeds timeout_s and keeps the state', async () => {
        await run('survivor = "still here"');
        const result = await run("import time\ntime.sleep(60)\nprint('slept through')", { timeout_s: 1 });
        assert.equal(result.stdout, '', 'interrupted before the sleep could finish');
        assert.equal(result.exit_code, 1);
        assert.equal(result.timed_out, true);
        assert.equal(result.state_lost, false);
        assert.match(result.stderr, /TimeoutError: execution exceeded the 1 s limit \(timeout_s\)/);
        assert.equal((await run('survivor')).stdout, "'still here'\n");
      });

      it('kills and restarts an interpreter whose code ignores the interrupt, and says state was lost', async () => {
        await run('doomed = 1');
        const code = 'import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass';
        const result = await run(code, { timeout_s: 1 });
        assert.equal(result.exit_code, 1);
        assert.equal(result.timed_out, true);
        assert.equal(result.state_lost, true);
        assert.match(result.stderr, /did not stop when interrupted/);
        const next = await run("'doomed' in globals()");
        assert.equal(next.stdout, 'False\n');
        assert.equal(next.state_lost, true);
        assert.match(next.notice, /fresh Python interpreter/);
        const later = await run('1 + 1');
        assert.equal(later.state_lost, false, 'only the first call after a restart carries the notice');
      });

      it('caps each stream at 1 MiB with an explicit truncation marker', async () => {
        const result = await run("import sys\nprint('o' * 3_000_000)\n_ = sys.stderr.write('e' * 2_000_000)");
        assert.equal(result.exit_code, 0);
        // Checked piecewise: a failed match on a 1 MiB string would bury the report.
        assert.ok(result.stdout.length < 1_100_000, `stdout is capped (${result.stdout.length} chars)`);
        assert.ok(result.stdout.startsWith('o'.repeat(1000)), 'stdout keeps the start of the output');
        const stdoutMarker = result.stdout.slice(-200);
        assert.ok(stdoutMarker.includes('[output truncated: 1951425 more bytes not shown (limit 1048576 bytes)]'), stdoutMarker);
        const stderrMarker = result.stderr.slice(-200);
        assert.ok(stderrMarker.includes('[output truncated: 951424 more bytes not shown'), stderrMarker);
        assert.equal((await run("print('small')")).stdout, 'small\n', 'the cap resets for the next call');
      });

      it('recovers when the interpreter exits (os._exit) or crashes (segfault)', async () => {
        await run('lost = True');
        const exited = await run("print('about to exit')\nimport os\nos._exit(7)");
        assert.equal(exited.exit_code, 1);
        assert.equal(exited.state_lost, true);
        assert.match(exited.stderr, /exited with code 7/);

        const fresh = await run("'lost' in globals()");
        assert.equal(fresh.stdout, 'False\n');
        assert.equal(fresh.state_lost, true);
        assert.match(fresh.notice, /previous one exited/);

        const crashed = await run('import ctypes\nctypes.string_at(0)');
        assert.equal(crashed.exit_code, 1);
        assert.equal(crashed.state_lost, true);
        assert.match(crashed.stderr, /SIGSEGV/);
        assert.equal((await run('6 * 7')).stdout, '42\n');
      });
    });

    describe('run_rollout with the real opencode and a scripted model', () => {
      let server: RunningServer;
      let llm: ScriptedLlm;
      let wrongLlm: ScriptedLlm;
      const listChanges: number[] = [];
      const logged: string[] = [];

      let fixture: BackendFixture;

      before(async () => {
        fixture = await target.setUp();
        [server, llm, wrongLlm] = await Promise.all([
          startServer({ env: fixture.env }),
          startScripted(exampleScript('script.json')),
          startScripted(exampleScript('script-wrong.json')),
        ]);
        server.client.setNotificationHandler(ResourceListChangedNotificationSchema, () => void listChanges.push(Date.now()));
        server.client.setNotificationHandler(
          LoggingMessageNotificationSchema,
          (n) => void (n.params.logger === 'run_rollout' && logged.push(String(n.params.data))),
        );
      });
      after(async () => {
        await Promise.all([server.close(), llm.close(), wrongLlm.close()]);
        await fixture.tearDown();
      });

      it('scores a correct solution 1.0, records every turn with token ids and logprobs, and reports progress', async () => {
        const progress: string[] = [];
        const result = (await server.client.callTool(
          { name: 'run_rollout', arguments: { ...exampleTask(), base_url: llm.url, model: 'scripted-model', disable_thinking: true } },
          undefined,
          { timeout: 180_000, onprogress: (p) => void progress.push(p.message ?? '') },
        )) as { structuredContent: Record<string, any>; content: Array<{ text: string }>; isError?: boolean };
        assert.equal(result.isError, undefined, JSON.stringify(result.content));
        const r = result.structuredContent;
        assert.deepEqual(JSON.parse(result.content[0]!.text), r, 'the text content is the same JSON, for OpenEnv clients');

        assert.equal(r.error, null);
        assert.equal(r.error_kind, null);
        assert.equal(r.reward, 1);
        assert.equal(r.task_id, 'fizzbuzz');
        assert.equal(r.agent_exit_code, 0);
        assert.equal(r.mode, 'transparent_proxy');
        assert.match(r.files['fizzbuzz.py'], /FizzBuzz/);
        assert.equal(r.verify_results.length, 1);
        assert.equal(r.verify_results[0].exit_code, 0);
        assert.match(r.verify_results[0].stdout, /all 100 lines correct/);
        for (const phase of ['sandbox', 'proxy', 'agent', 'verify', 'collect']) assert.equal(typeof r.timings[phase], 'number', phase);
        assert.ok(
          r.agent_events.some((e: any) => e.type === 'tool_use' && e.part?.tool === 'write'),
          'opencode events are parsed',
        );

        const agentTurns = r.proxy_turns.filter((t: any) => t.kind === 'agent');
        assert.equal(agentTurns.length, 3, 'three scripted agent steps');
        assert.ok(r.proxy_turns.some((t: any) => t.kind === 'title'));
        const first = agentTurns[0];
        const expectedTokens = tokenize("I'll write fizzbuzz.py.");
        assert.deepEqual(
          first.completion_tokens.slice(0, expectedTokens.length),
          expectedTokens.map((t) => t.token),
        );
        assert.deepEqual(
          first.completion_token_ids.slice(0, expectedTokens.length),
          expectedTokens.map((t) => t.id),
        );
        assert.deepEqual(
          first.per_token_logps.slice(0, expectedTokens.length),
          expectedTokens.map((t) => t.logprob),
        );
        assert.equal(first.completion_token_ids.length, first.per_token_logps.length);
        assert.equal(first.finish_reason, 'tool_calls');
        assert.equal(first.upstream_status, 200);
        assert.ok(first.latency_s > 0);
        assert.match(first.session_id, /^ses_/);
        assert.equal(first.usage.completion_tokens, first.completion_token_ids.length);
        assert.deepEqual(first.injected.sort(), ['chat_template_kwargs.enable_thinking', 'logprobs', 'return_token_ids'].sort());

        // What the model received: the injections. What opencode sent: none of them (it never asks for logprobs).
        const received = llm.requests.filter((q) => q.path === '/v1/chat/completions').map((q) => q.body);
        assert.ok(received.length >= 4);
        for (const body of received) {
          assert.equal(body.logprobs, true);
          assert.equal(body.top_logprobs, 5);
          assert.equal(body.return_token_ids, true);
          assert.deepEqual(body.chat_template_kwargs, { enable_thinking: false });
          assert.equal(body.max_tokens, 4096);
        }

        assert.ok(progress.includes('phase: agent'));
        assert.ok(progress.includes('phase: verify'));
        assert.ok(
          progress.some((m) => /^LLM turn \d+ \(agent\): tool_calls/.test(m)),
          progress.join('\n'),
        );
        assert.deepEqual(logged, progress, 'the same messages arrive as info log notifications');

        const state = await server.callOk('get_state');
        assert.equal(state.rollouts_completed, 1);
        assert.equal(state.last_reward, 1);
        assert.equal(state.last_task_id, 'fizzbuzz');
        assert.equal(state.last_sandbox_id, r.sandbox_id);
        assert.equal(await fixture.liveSandboxes(server), 0, 'the rollout sandbox is gone');

        // The full trace, over MCP resources.
        const { resources } = await server.client.listResources();
        const listed = resources.find((res) => res.uri === r.trace_uri);
        assert.ok(listed, 'the trace is listed');
        assert.equal(listed.mimeType, 'application/json');
        const read = await server.client.readResource({ uri: r.trace_uri });
        const trace = JSON.parse((read.contents[0] as { text: string }).text);
        assert.equal(trace.rollout_id, r.rollout_id);
        assert.equal(trace.result.reward, 1);
        const traceFirst = trace.turns.find((t: any) => t.kind === 'agent');
        assert.ok(Array.isArray(traceFirst.request.messages) && Array.isArray(traceFirst.request.tools), 'full requests are in the trace');
        assert.equal(traceFirst.response.tool_calls[0].name, 'write');
        assert.ok(traceFirst.prompt_token_ids.length > 100, 'prompt token ids are kept in the trace');
        assert.equal(first.prompt_token_ids, undefined, 'and left out of the result, where they would dwarf everything else');
        assert.ok(listChanges.length >= 1, 'clients are told the resource list changed');

        await assert.rejects(server.client.readResource({ uri: 'opencode-env://traces/rollout-does-not-exist' }), /not found/i);
      });

      // One rollout per reward source; the precedence rules between them are unit-tested (test/unit/reward.test.ts).
      it('takes the reward from reward.txt', async () => {
        const r = await server.callOk('run_rollout', {
          ...exampleTask(),
          base_url: llm.url,
          model: 'scripted-model',
          test_script: null,
          verify: ['exit 1', 'echo 0.25 > /home/user/logs/verifier/reward.txt'],
        });
        assert.equal(r.reward, 0.25);
        assert.equal(r.error_kind, null);
      });

      it('takes the reward and named rewards from reward.json', async () => {
        const r = await server.callOk('run_rollout', {
          ...exampleTask(),
          base_url: llm.url,
          model: 'scripted-model',
          test_script:
            'echo \'{"reward": 0.75, "tests_passed": 3, "style": 0.5, "note": "text is ignored"}\' > "$HOME/logs/verifier/reward.json"; exit 1',
        });
        assert.equal(r.reward, 0.75);
        assert.deepEqual(r.rewards, { tests_passed: 3, style: 0.5 });
      });

      it('scores verify commands as passed / total, and stages files and runs setup first', async () => {
        const r = await server.callOk('run_rollout', {
          instruction: 'Write fizzbuzz.py.',
          task_id: 'staged',
          base_url: llm.url,
          model: 'scripted-model',
          files: { 'data/expected.txt': 'Fizz\n', 'notes.md': '# notes\n' },
          setup: ['test -f data/expected.txt', 'echo prepared > setup-marker.txt'],
          // The agent's LLM calls go through the server, never out of the sandbox.
          allow_internet: false,
          verify: ['test -f fizzbuzz.py', 'grep -q prepared setup-marker.txt', 'test -f missing-file.txt'],
        });
        assert.equal(r.error, null);
        assert.equal(r.reward, 2 / 3);
        assert.equal(r.setup_results.length, 2);
        assert.ok(r.setup_results.every((s: any) => s.exit_code === 0));
        assert.deepEqual(Object.keys(r.files).sort(), ['data/expected.txt', 'fizzbuzz.py', 'notes.md', 'setup-marker.txt']);
        if (fixture.internetAccessAsked)
          assert.equal(fixture.internetAccessAsked(r.sandbox_id), false, 'allow_internet reached the backend');
      });

      it('gives reward null when there is no verifier at all', async () => {
        const r = await server.callOk('run_rollout', { instruction: 'Write fizzbuzz.py.', base_url: llm.url, model: 'scripted-model' });
        assert.equal(r.reward, null);
        assert.equal(r.error, null);
        assert.equal(r.error_kind, null);
        assert.equal(r.verify_results.length, 0);
      });

      it('black_box mode relays the traffic without recording turns, and a wrong solution scores 0.0', async () => {
        const before = wrongLlm.requests.length;
        const r = await server.callOk('run_rollout', {
          ...exampleTask(),
          base_url: wrongLlm.url,
          model: 'scripted-model',
          mode: 'black_box',
        });
        assert.equal(r.error, null);
        assert.equal(r.reward, 0);
        assert.notEqual(r.verify_results[0].exit_code, 0);
        assert.match(r.verify_results[0].stderr, /wrong output/);
        assert.equal(r.mode, 'black_box');
        assert.deepEqual(r.proxy_turns, []);
        const received = wrongLlm.requests.slice(before).filter((q) => q.path === '/v1/chat/completions');
        assert.ok(received.length >= 3, `the title and both scripted steps were relayed (${received.length} requests)`);
        assert.ok(
          received.every((q) => q.body.logprobs === undefined && q.body.return_token_ids === undefined),
          'nothing was injected',
        );
      });

      it('rejects a request it cannot run, naming the field, without running anything', async () => {
        const noEndpoint = await server.call('run_rollout', { instruction: 'x' });
        assert.equal(noEndpoint.isError, true);
        assert.match(errorText(noEndpoint), /endpoint.*base_url/);
        const escape = await server.call('run_rollout', {
          instruction: 'x',
          base_url: llm.url,
          model: 'm',
          files: { '../outside.txt': 'x' },
        });
        assert.equal(escape.isError, true);
        assert.match(errorText(escape), /files: "\.\.\/outside\.txt" must be a relative path/);
        const badUrl = await server.call('run_rollout', { instruction: 'x', base_url: 'not a url', model: 'm' });
        assert.match(errorText(badUrl), /base_url/);
        const noVllmUrl = await server.call('run_rollout', { instruction: 'x', endpoint: 'vllm' });
        assert.match(errorText(noVllmUrl), /VLLM_URL/);
        const seedStyle = await server.call('run_rollout', { instruction: '', base_url: llm.url, model: 'm' });
        assert.match(errorText(seedStyle), /instruction/);
      });

      it('honours logging/setLevel: above info, a rollout sends no log notifications', async () => {
        await server.client.setLoggingLevel('warning');
        const before = logged.length;
        const r = await server.callOk('run_rollout', { ...exampleTask(), setup: ['exit 3'], base_url: llm.url, model: 'scripted-model' });
        assert.equal(r.error_kind, 'setup');
        assert.equal(logged.length, before);
        await server.client.setLoggingLevel('info');
      });
    });
  });
}
