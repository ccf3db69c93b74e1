import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir, repoRoot, startServer, type RunningServer } from './helpers/server.js';

function bwrapWorks(): boolean {
  try {
    execFileSync('bwrap', ['--ro-bind', '/', '/', '--unshare-pid', '--unshare-net', '--dev', '/dev', '--proc', '/proc', 'true'], {
      stdio: 'ignore',
    });
    return true;
  } catch {
    return false;
  }
}

const hasBwrap = bwrapWorks();
const skipWithoutBwrap = hasBwrap ? false : 'bubblewrap is not usable on this machine (CI installs it)';

describe('sandbox isolation under bubblewrap', { skip: skipWithoutBwrap }, () => {
  let server: RunningServer;
  let listener: net.Server;
  let listenerPort = 0;
  const hostSecret = 'host-secret-value-123';

  before(async () => {
    listener = net.createServer((socket) => socket.end('hello from the host\n'));
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    listenerPort = (listener.address() as net.AddressInfo).port;
    server = await startServer({ env: { OPENCODE_ENV_ISOLATION: 'bwrap', SECRET_API_KEY: hostSecret } });
    writeFileSync(path.join(server.home, 'credentials.txt'), hostSecret);
  });
  after(async () => {
    await server.close();
    listener.close();
  });

  const run = (code: string) => server.callOk('execute_python', { code });

  it('reports bubblewrap as the isolation in use', async () => {
    await run('1');
    assert.equal((await server.callOk('get_state')).isolation, 'bubblewrap');
  });

  it('lets code write in its workdir, home and /tmp, and keeps files between calls', async () => {
    await run(
      "open('/home/user/workdir/a.txt', 'w').write('A')\nopen('/tmp/t.txt', 'w').write('T')\nopen('/home/user/h.txt', 'w').write('H')",
    );
    const result = await run("import os\n(os.getcwd(), open('a.txt').read(), open('/tmp/t.txt').read(), open('/home/user/h.txt').read())");
    assert.equal(result.stdout, "('/home/user/workdir', 'A', 'T', 'H')\n");
  });

  it('cannot write anywhere outside its own directories', async () => {
    const targets = [
      '/etc/opencode-env-probe',
      '/usr/opencode-env-probe',
      '/var/opencode-env-probe',
      path.join(repoRoot, 'opencode-env-probe'),
    ];
    const code = `import json\nout = {}\nfor p in ${JSON.stringify(targets)}:\n    try:\n        open(p, 'w').write('x')\n        out[p] = 'written'\n    except OSError as e:\n        out[p] = e.strerror\nprint(json.dumps(out))`;
    const outcome = JSON.parse((await run(code)).stdout) as Record<string, string>;
    for (const target of targets) {
      assert.notEqual(outcome[target], 'written', `${target} must not be writable`);
      assert.ok(!existsSync(target), `${target} does not exist on the host`);
    }
    assert.equal(outcome['/etc/opencode-env-probe'], 'Read-only file system');
  });

  it("cannot read the host's home directory or the server's environment", async () => {
    const home = server.home;
    const result = await run(
      [
        'import os',
        `home = ${JSON.stringify(home)}`,
        'try:',
        "    print(open(home + '/credentials.txt').read())",
        'except OSError as e:',
        "    print('unreadable', e.strerror)",
        'print(os.listdir(home) if os.path.isdir(home) else [])',
        `print('SECRET_API_KEY' in os.environ, ${JSON.stringify(hostSecret)} in str(os.environ))`,
      ].join('\n'),
    );
    assert.equal(result.stdout, 'unreadable No such file or directory\n[]\nFalse False\n');
  });

  it('does not see host files in /tmp, nor other processes of the host', async () => {
    const hostTmpFile = path.join('/tmp', `opencode-env-isolation-probe-${process.pid}`);
    writeFileSync(hostTmpFile, 'host');
    try {
      const result = await run(
        `import os\nprint(os.path.exists(${JSON.stringify(hostTmpFile)}))\npids = [p for p in os.listdir('/proc') if p.isdigit()]\nprint(len(pids) < 10, ${process.pid} in map(int, pids) and ${process.pid} != os.getpid())`,
      );
      assert.equal(result.stdout, 'False\nTrue False\n');
    } finally {
      removeDir(hostTmpFile);
    }
  });

  it('has no network route to the host by default', async () => {
    const result = await run(
      `import socket\ntry:\n    socket.create_connection(('127.0.0.1', ${listenerPort}), timeout=3).recv(100)\n    print('connected')\nexcept OSError as e:\n    print('refused', type(e).__name__)`,
    );
    assert.match(result.stdout, /^refused/);
  });

  it(
    'runs as an unprivileged user when the server runs as root',
    { skip: process.getuid?.() !== 0 ? 'server is not root' : false },
    async () => {
      const result = await run(
        "import os\nprint(os.getuid())\ntry:\n    open('/etc/shadow').read()\n    print('shadow readable')\nexcept OSError as e:\n    print(e.strerror)",
      );
      assert.equal(result.stdout, '65534\nPermission denied\n');
    },
  );
});

describe('sandbox without bubblewrap', () => {
  let server: RunningServer;
  let pathDir: string;

  before(async () => {
    // A PATH with the tools the server needs but no bwrap: the real "bubblewrap is not installed" case.
    pathDir = makeTempDir('path-without-bwrap');
    const hostPython = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
    for (const tool of ['sh', 'bash', 'prlimit', 'setpriv', 'env', 'cat']) {
      const real = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
      if (real) symlinkSync(real, path.join(pathDir, tool));
    }
    symlinkSync(hostPython, path.join(pathDir, 'python3'));
    server = await startServer({ env: { PATH: pathDir, OPENCODE_ENV_LOG_LEVEL: 'info' } });
  });
  after(async () => {
    await server.close();
    removeDir(pathDir);
  });

  it('falls back to plain processes, says so once on stderr, and still keeps state', async () => {
    await server.callOk('execute_python', { code: 'v = 20' });
    await server.callOk('reset');
    await server.callOk('execute_python', { code: 'v = 21' });
    const result = await server.callOk('execute_python', { code: 'v * 2' });
    assert.equal(result.stdout, '42\n');
    assert.equal((await server.callOk('get_state')).isolation, 'none');
    const warnings = server.stderr().match(/bubblewrap \(bwrap\) is not installed/g) ?? [];
    assert.equal(warnings.length, 1, server.stderr());
  });
});

describe('plain-process sandbox as root with a system Python', () => {
  const systemPython = '/usr/bin/python3';
  const skip = process.getuid?.() !== 0 ? 'server is not root' : !existsSync(systemPython) ? `${systemPython} is missing` : false;
  let server: RunningServer;
  before(async () => {
    if (skip) return;
    server = await startServer({ env: { OPENCODE_ENV_ISOLATION: 'none', OPENCODE_ENV_PYTHON: systemPython } });
  });
  after(async () => {
    await server?.close();
  });

  it('runs code as an unprivileged uid that cannot write system files', { skip }, async () => {
    const result = await server.callOk('execute_python', {
      code: "import os\nprint(os.getuid())\ntry:\n    open('/etc/opencode-env-probe', 'w')\nexcept OSError as e:\n    print(e.strerror)",
    });
    assert.equal(result.stdout, '65534\nPermission denied\n');
    assert.equal((await server.callOk('get_state')).isolation, 'none');
    assert.doesNotMatch(server.stderr(), /bubblewrap/, 'no warning when plain processes were asked for');
  });
});
