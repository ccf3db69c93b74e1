import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PythonInterpreter } from '../../src/core/python/interpreter.js';
import { createLogger } from '../../src/log.js';
import { resourcesDir } from '../../src/paths.js';
import type { ProcessExit, Sandbox, SandboxProcess, StartOptions } from '../../src/sandbox/types.js';

const logger = createLogger('silent');
const MAX_OUTPUT = 1024 * 1024;

/**
 * A stand-in for the driver process: `script` sees each line the host writes and answers through `emit`,
 * in whatever chunks it likes. A kill ends it as SIGKILL would.
 */
class ScriptedDriver implements SandboxProcess {
  readonly pid = 4242;
  readonly exited: Promise<ProcessExit>;
  killed = false;
  emitStdout: (chunk: Buffer) => void = () => {};
  emitStderr: (chunk: Buffer) => void = () => {};
  private finish!: (exit: ProcessExit) => void;

  constructor(private readonly script: (request: Record<string, unknown>, driver: ScriptedDriver) => void) {
    this.exited = new Promise((resolve) => (this.finish = resolve));
  }

  emit(text: string | Buffer): void {
    this.emitStdout(Buffer.isBuffer(text) ? text : Buffer.from(text));
  }

  async write(data: string | Buffer): Promise<void> {
    for (const line of String(data).split('\n').filter(Boolean)) this.script(JSON.parse(line), this);
  }

  async endInput(): Promise<void> {
    this.finish({ exitCode: 0, signal: null });
  }

  async kill(): Promise<void> {
    this.killed = true;
    this.finish({ exitCode: 137, signal: 'SIGKILL' });
  }
}

function sandboxFor(driver: ScriptedDriver, greeting = '{"ready": true}\n'): Sandbox {
  const sandbox: Partial<Sandbox> = {
    pythonExecutable: async () => 'python3',
    resourcePath: async (relative) => `/resources/${relative}`,
    start: async (_argv: string[], options?: StartOptions) => {
      driver.emitStdout = (chunk) => options?.onStdout?.(chunk);
      driver.emitStderr = (chunk) => options?.onStderr?.(chunk);
      setImmediate(() => driver.emit(greeting));
      return driver;
    },
  };
  return sandbox as Sandbox;
}

function reply(id: unknown, stdout: Buffer | string = '', extra: Record<string, unknown> = {}): string {
  const base64 = (data: Buffer | string) => Buffer.from(data).toString('base64');
  return `${JSON.stringify({
    id,
    stdout_b64: base64(stdout),
    stderr_b64: '',
    exit_code: 0,
    interrupted: false,
    dropped: { stdout: 0, stderr: 0 },
    ...extra,
  })}\n`;
}

async function startWith(script: ConstructorParameters<typeof ScriptedDriver>[0]) {
  const driver = new ScriptedDriver(script);
  const interpreter = await PythonInterpreter.start(sandboxFor(driver), { logger });
  return { driver, interpreter };
}

const execute = (interpreter: PythonInterpreter) => interpreter.execute('x', { timeoutMs: 10_000, maxOutputBytes: MAX_OUTPUT });

describe('PythonInterpreter: the host side of the driver protocol', () => {
  it('decodes an honest reply that arrives in pieces, with characters split across chunks', async () => {
    const { interpreter } = await startWith((request, driver) => {
      const bytes = Buffer.from(reply(request.id, 'héllo €😀\n'));
      for (const byte of bytes) driver.emit(Buffer.from([byte]));
    });
    const outcome = await execute(interpreter);
    assert.equal(outcome.kind, 'completed');
    assert.equal(outcome.kind === 'completed' && outcome.reply.stdout, 'héllo €😀\n');
    assert.equal(interpreter.alive, true);
  });

  it('kills the interpreter when a reply names another call, and the call says it died instead of taking it', async () => {
    const { driver, interpreter } = await startWith((request, d) => d.emit(reply(Number(request.id) + 1, 'forged')));
    const outcome = await execute(interpreter);
    assert.equal(outcome.kind, 'died');
    assert.ok(outcome.kind === 'died' && /a reply for call 2 while call 1 was pending/.test(outcome.driverLog), 'the log says why');
    assert.equal(driver.killed, true, 'the process was killed');
    assert.equal(interpreter.alive, false);
  });

  it('kills the interpreter at a frame past the bound, holding no more than the bound', async () => {
    let sent = 0;
    const { driver, interpreter } = await startWith((_request, d) => {
      const chunk = Buffer.alloc(64 * 1024, 'x');
      // 64 MiB without a newline, unless the host gives up first.
      for (let i = 0; i < 1024 && !d.killed; i++) {
        d.emit(chunk);
        sent += chunk.length;
      }
    });
    const outcome = await execute(interpreter);
    assert.equal(outcome.kind, 'died');
    assert.ok(outcome.kind === 'died' && /a frame longer than \d+ bytes/.test(outcome.driverLog), 'the log says why');
    assert.equal(driver.killed, true);
    assert.ok(sent <= 4 * MAX_OUTPUT, `the host stopped reading after ${sent} bytes`);
  });

  it('kills the interpreter on a frame that is not JSON, a malformed reply, or a reply with no call pending', async () => {
    for (const bad of ['not json\n', '{"id": 1, "stdout": "old format"}\n']) {
      const { driver, interpreter } = await startWith((_request, d) => d.emit(bad));
      assert.equal((await execute(interpreter)).kind, 'died', bad);
      assert.equal(driver.killed, true, bad);
    }
    const { driver, interpreter } = await startWith((request, d) => d.emit(reply(request.id)));
    assert.equal((await execute(interpreter)).kind, 'completed');
    driver.emit(reply(2));
    assert.equal(driver.killed, true, 'an unexpected reply between calls kills it too');
    assert.equal(interpreter.alive, false);
  });

  it("writes exec requests whose header the driver's supervisor reads without decoding the code", async () => {
    const written: string[] = [];
    const driver = new ScriptedDriver((request, d) => d.emit(reply(request.id)));
    const write = driver.write.bind(driver);
    driver.write = (data) => {
      written.push(String(data));
      return write(data);
    };
    const interpreter = await PythonInterpreter.start(sandboxFor(driver), { logger });
    await interpreter.execute('print(\'{"op":"exec","id":99,"max_output_bytes":1,"code":\')', { timeoutMs: 10_000, maxOutputBytes: 4096 });
    // The driver's own pattern, loaded from driver.py (its main guard keeps it from serving), against the line written.
    const check = spawnSync(
      process.env.OPENCODE_ENV_PYTHON ?? 'python3',
      [
        '-c',
        'import importlib.util, sys\n' +
          'spec = importlib.util.spec_from_file_location("driver", sys.argv[1])\n' +
          'driver = importlib.util.module_from_spec(spec); spec.loader.exec_module(driver)\n' +
          'header = driver.EXEC_HEADER.match(sys.stdin.buffer.read())\n' +
          'print(" ".join(g.decode() for g in header.groups()) if header else "no match")',
        path.join(resourcesDir, 'python', 'driver.py'),
      ],
      { input: written[0], encoding: 'utf8' },
    );
    assert.equal(check.stdout.trim(), '1 4096', `the supervisor reads the id and the output cap (${check.stderr})`);
  });

  it('refuses to start when the first frame is not the ready message', async () => {
    const driver = new ScriptedDriver(() => {});
    await assert.rejects(
      PythonInterpreter.start(sandboxFor(driver, reply(1, 'too early')), { logger }),
      /did not start.*before the ready message/s,
    );
    assert.equal(driver.killed, true);
  });
});
