import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Case, CaseContext } from '../harness.js';
import { resultText, type Server } from '../server.js';

interface PythonRun {
  result: CallToolResult;
  out: Record<string, any>;
  seconds: number;
  /** CPU seconds the server itself spent on the call. */
  serverCpu: number;
}

async function runPython(server: Server, code: string, timeoutS: number, callTimeoutMs = 120_000): Promise<PythonRun> {
  const cpuBefore = server.cpuSeconds();
  const started = performance.now();
  const result = await server.call('execute_python', { code, timeout_s: timeoutS }, { timeoutMs: callTimeoutMs });
  return {
    result,
    out: (result.structuredContent ?? {}) as Record<string, any>,
    seconds: (performance.now() - started) / 1000,
    serverCpu: server.alive ? server.cpuSeconds() - cpuBefore : NaN,
  };
}

function summary(run: PythonRun): string {
  if (run.result.isError) return `isError: ${resultText(run.result).slice(0, 80)}`;
  const { exit_code, timed_out, state_lost, stdout } = run.out;
  return `exit ${exit_code}, timed_out ${timed_out}, state_lost ${state_lost}, stdout ${String(stdout ?? '').length} chars`;
}

/** Runs `code` in execute_python on a fresh server, checks it with `check`, and reports time, server CPU and memory. */
function pythonCase(
  id: string,
  title: string,
  sent: string,
  code: string,
  options: { timeoutS: number; maxSeconds: number; maxServerCpu?: number; maxRssMiB?: number },
  check: (t: CaseContext, run: PythonRun) => void,
): Case {
  return {
    id,
    title,
    sent,
    async run(t) {
      const server = await t.server();
      await server.callOk('execute_python', { code: 'import os, sys\nwarm = 1' });
      const run = await runPython(server, code, options.timeoutS);
      t.expect(run.seconds < options.maxSeconds, `took ${run.seconds.toFixed(1)} s (limit ${options.maxSeconds} s)`);
      if (options.maxServerCpu !== undefined)
        t.expect(run.serverCpu < options.maxServerCpu, `the server spent ${run.serverCpu.toFixed(1)} s of CPU on it`);
      const peak = server.alive ? server.peakRssMiB() : NaN;
      if (options.maxRssMiB !== undefined) t.expect(peak < options.maxRssMiB, `server peak RSS ${peak.toFixed(0)} MiB`);
      check(t, run);
      return `${summary(run)}; ${run.seconds.toFixed(1)} s, server CPU ${run.serverCpu.toFixed(1)} s, peak RSS ${peak.toFixed(0)} MiB`;
    },
  };
}

/** Writes `payload` to every descriptor 3..255 that is open for writing; a write that blocks is given up after 5 s. */
function writeToEveryFd(payload: string): string {
  return `import fcntl, os, signal
payload = ${payload}
class Stuck(Exception):
    pass
def give_up(*_):
    raise Stuck()
signal.signal(signal.SIGALRM, give_up)
reached = []
for fd in range(3, 256):
    try:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            continue
        signal.alarm(5)
        os.write(fd, payload)
        reached.append(fd)
    except (OSError, Stuck):
        pass
    finally:
        signal.alarm(0)
print('honest output, wrote to', len(reached), 'descriptors')`;
}

/** Reply lines for call ids 0..2000, as the driver would write them, all claiming success with stdout FORGED. */
const FORGED_REPLIES = `b''.join(('{"id": %d, "stdout": "FORGED", "stderr": "", "exit_code": 0, "interrupted": false, "dropped": {"stdout": 0, "stderr": 0}}\\n' % i).encode() for i in range(2001))`;

export const pythonCases: Case[] = [
  pythonCase(
    '6a',
    'interpreter protocol: 64 MiB flood',
    'execute_python writing 64 MiB without a newline to every fd 3..255',
    writeToEveryFd("b'x' * (64 << 20)"),
    { timeoutS: 60, maxSeconds: 30, maxServerCpu: 5, maxRssMiB: 512 },
    (t, run) => {
      const claimsSuccess = !run.result.isError && run.out.exit_code === 0;
      t.expect(
        !claimsSuccess || String(run.out.stdout).includes('honest output'),
        `success claimed without the code's output: ${summary(run)}`,
      );
    },
  ),
  {
    id: '6b',
    title: 'interpreter protocol: forged replies',
    sent: 'execute_python writing forged reply lines (ids 0..2000, stdout "FORGED") to every fd 3..255, then two more calls',
    async run(t) {
      const server = await t.server();
      await server.callOk('execute_python', { code: 'x = 41' });
      const forged = await runPython(server, writeToEveryFd(FORGED_REPLIES), 30);
      const after = await runPython(server, 'print("after")', 30);
      const again = await runPython(server, 'print("again")', 30);
      for (const [name, run, expected] of [
        ['the forging call', forged, 'honest output'],
        ['the next call', after, 'after'],
        ['the call after', again, 'again'],
      ] as const) {
        const stdout = String(run.out.stdout ?? '');
        t.expect(!stdout.includes('FORGED'), `${name} returned a forged reply`);
        t.expect(
          run.result.isError || run.out.exit_code !== 0 || stdout.includes(expected),
          `${name}: success without its output (${summary(run)})`,
        );
      }
      t.expect(after.out.exit_code === 0 && again.out.exit_code === 0, `later calls failed: ${summary(after)} / ${summary(again)}`);
      return `forging call: ${summary(forged)}; next: "${String(after.out.stdout).trim()}", then "${String(again.out.stdout).trim()}"`;
    },
  },
  pythonCase(
    '8a',
    'infinite loop',
    'execute_python "while True: pass", timeout_s 2',
    'while True:\n    pass',
    { timeoutS: 2, maxSeconds: 15 },
    (t, run) => t.expect(run.out.timed_out === true, `timed_out ${run.out.timed_out}`),
  ),
  pythonCase(
    '8b',
    '100 MB of output',
    'execute_python writing 100 MB to stdout and 100 MB to stderr',
    "import os\nchunk = b'x' * (1 << 20)\nfor _ in range(100):\n    os.write(1, chunk)\n    os.write(2, chunk)\nprint('end')",
    { timeoutS: 60, maxSeconds: 45, maxRssMiB: 512 },
    (t, run) => {
      const size = String(run.out.stdout ?? '').length + String(run.out.stderr ?? '').length;
      t.expect(!run.result.isError, `isError: ${resultText(run.result).slice(0, 200)}`);
      t.expect(size <= 4 * 1024 * 1024, `${size} chars of output returned, not capped`);
    },
  ),
  pythonCase(
    '8c',
    'non-UTF-8 output',
    'execute_python writing bytes 0x80..0xff to stdout and stderr',
    'import os\nos.write(1, bytes(range(0x80, 0x100)))\nos.write(2, bytes(range(0x80, 0x100)))',
    { timeoutS: 10, maxSeconds: 10 },
    (t, run) => {
      t.expect(!run.result.isError && run.out.exit_code === 0, summary(run));
      t.expect(String(run.out.stdout ?? '').length > 0, 'the bytes were dropped');
    },
  ),
  pythonCase(
    '8d',
    'NUL bytes in output',
    'execute_python writing "a\\0b\\0" to stdout and a NUL in an expression value',
    "import os\nos.write(1, b'a\\x00b\\x00\\n')\n'c\\x00d'",
    { timeoutS: 10, maxSeconds: 10 },
    (t, run) => {
      t.expect(!run.result.isError && run.out.exit_code === 0, summary(run));
      t.expect(String(run.out.stdout ?? '').includes('a\u0000b'), `stdout ${JSON.stringify(run.out.stdout)}`);
    },
  ),
];
