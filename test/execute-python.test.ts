import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startServer, type RunningServer } from './helpers/server.js';

describe('execute_python over MCP stdio', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.close();
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
