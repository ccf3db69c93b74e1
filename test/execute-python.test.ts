import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startServer, type RunningServer } from './helpers/server.js';

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
