import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
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

/** CPU seconds (user + system) the server process itself has used so far (Linux: /proc, in 1/100 s ticks). */
function serverCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The server's peak resident memory so far, in MiB. */
function serverPeakRssMiB(pid: number): number {
  const kib = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kib) / 1024;
}

describe("user code cannot reach, flood or forge the interpreter's protocol channel", () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.close();
  });

  const run = (code: string) => server.callOk('execute_python', { code });
  // Replies in the driver's wire format for the first 50 call ids (this call's and the next among them).
  const forgedReplies =
    'b\'\'.join(b\'{"id": %d, "stdout": "forged", "stdout_b64": "Zm9yZ2Vk", "stderr_b64": "", "exit_code": 0, ' +
    '"interrupted": false, "dropped": {"stdout": 0, "stderr": 0}}\\n\' % i for i in range(1, 50))';

  /** Runs `code` and measures the wall time and the server's own CPU time it took. */
  async function measured(code: string) {
    const cpuBefore = serverCpuSeconds(server.pid);
    const started = Date.now();
    const result = await run(code);
    return { result, wallS: (Date.now() - started) / 1000, serverCpuS: serverCpuSeconds(server.pid) - cpuBefore };
  }

  it('64 MiB without a newline on stdout and stderr is capped, cheaply for the server', async () => {
    await run('kept = "yes"');
    const { result, wallS, serverCpuS } = await measured(
      "import os\nflood = b'{' * (64 << 20)\nfor fd in (1, 2):\n    os.write(fd, flood)\nprint('after the flood')",
    );
    assert.equal(result.exit_code, 0, result.stderr.slice(-500));
    assert.ok(result.stdout.startsWith('{'.repeat(1000)), 'stdout keeps the start of the flood');
    const marker = result.stdout.slice(-200);
    assert.ok(marker.includes('[output truncated: 66060304 more bytes not shown (limit 1048576 bytes)]'), marker);
    assert.ok(result.stderr.slice(-200).includes('[output truncated: 66060288 more bytes'), result.stderr.slice(-200));
    assert.ok(wallS < 10, `the call took ${wallS} s`);
    assert.ok(serverCpuS < 2, `the server spent ${serverCpuS} s of CPU on it`);
    assert.equal((await run('kept')).stdout, "'yes'\n", 'the interpreter and its state live on');
  });

  it('junk, forged replies and 64 MiB floods on every other descriptor end in an honest "died", never a forged result', async () => {
    await run('doomed = True');
    const { result, wallS, serverCpuS } = await measured(
      `import os\nforged = ${forgedReplies}\nflood = b'x' * (64 << 20)\n` +
        'for fd in range(3, 256):\n    for data in (forged, flood):\n        try:\n            os.write(fd, data)\n        except OSError:\n            pass\n' +
        "print('survived')",
    );
    assert.equal(result.exit_code, 1);
    assert.equal(result.state_lost, true, 'the interpreter was killed for breaking the protocol');
    assert.doesNotMatch(result.stdout, /forged|survived/);
    assert.match(result.stderr, /broke the status protocol/);
    assert.ok(wallS < 10, `the call took ${wallS} s`);
    assert.ok(serverCpuS < 2, `the server spent ${serverCpuS} s of CPU on it`);

    const next = await run("'doomed' in globals()");
    assert.equal(next.stdout, 'False\n', 'the next call runs, in a fresh interpreter');
    assert.equal(next.state_lost, true);
    assert.ok(serverPeakRssMiB(server.pid) < 400, `server peak RSS ${serverPeakRssMiB(server.pid)} MiB`);
  });

  it("a status frame for another call is a protocol violation, not that call's result", async () => {
    await run('x = 1');
    const result = await run(
      "import os\nfor fd in range(3, 256):\n    try:\n        os.write(fd, b''.join(b'done %d 0 0\\n' % i for i in range(100, 0, -1)))\n    except OSError:\n        pass",
    );
    assert.equal(result.state_lost, true);
    assert.match(result.stderr, /done frame for call 100 while call \d+ was running/);
    assert.equal((await run('6 * 7')).stdout, '42\n');
  });

  it("cannot open the driver's descriptors through /proc; forged replies it prints are just its output", async (t) => {
    if ((await run('import os\nos.geteuid()')).stdout === '0\n') {
      t.skip('sandbox code runs as root here (no privilege drop), and root can reach any process');
      return;
    }
    const result = await run(
      `import os\nforged = ${forgedReplies}\nreached = []\n` +
        'for pid in {os.getppid(), 1} - {os.getpid()}:\n    for fd in range(64):\n        try:\n' +
        "            handle = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY | os.O_NONBLOCK)\n        except OSError:\n            continue\n" +
        "        reached.append(f'/proc/{pid}/fd/{fd}')\n        try:\n            os.write(handle, forged)\n        except OSError:\n            pass\n" +
        '        os.close(handle)\n' +
        'try:\n    os.listdir(f"/proc/{os.getppid()}/fd")\n    listed = "listed"\nexcept PermissionError:\n    listed = "denied"\n' +
        'os.write(1, forged)\nos.write(2, forged)\nprint(reached, listed)',
    );
    assert.equal(result.exit_code, 0, result.stderr.slice(-500));
    assert.equal(result.state_lost, false);
    assert.ok(result.stdout.endsWith('\n[] denied\n'), `no descriptor of the driver could be opened: ${result.stdout.slice(-300)}`);
    assert.ok(result.stdout.startsWith('{"id": 1, "stdout": "forged"'), 'forged replies printed come back as output');
    assert.ok(result.stderr.startsWith('{"id": 1, "stdout": "forged"'), 'also on stderr');
    assert.equal((await run("'honest'")).stdout, "'honest'\n", 'the next call gets its own reply');
  });

  it('programs started by user code inherit no descriptor but 0, 1 and 2', async () => {
    const probe =
      'import os\\nfds = []\\nfor fd in range(1024):\\n    try:\\n        os.fstat(fd)\\n        fds.append(fd)\\n    except OSError:\\n        pass\\nprint(fds)';
    const result = await run(
      `import os, subprocess, sys\nopen('/tmp/fd-probe.py', 'w').write('${probe}')\n` +
        "subprocess.run([sys.executable, '/tmp/fd-probe.py'], close_fds=False)\nos.system(f'{sys.executable} /tmp/fd-probe.py')\n" +
        "_ = subprocess.run(['ls', '/proc/self/fd'], close_fds=False)",
    );
    assert.equal(result.exit_code, 0, result.stderr);
    // ls lists its own handle on /proc/self/fd as 3.
    assert.equal(result.stdout, '[0, 1, 2]\n[0, 1, 2]\n0\n1\n2\n3\n');
  });
});
