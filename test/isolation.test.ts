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

  it('runs under a seccomp filter that denies new namespaces, mounts, ptrace and the keyring with EPERM', async () => {
    const code = [
      'import ctypes, errno, json, os, platform, subprocess',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'L = ctypes.c_long',
      "arm = platform.machine() == 'aarch64'",
      'out = {}',
      'def outcome(result):',
      "    return 'OK' if result != -1 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))",
      'def command(name, argv):',
      '    p = subprocess.run(argv, capture_output=True, text=True)',
      "    out[name] = 'EPERM' if p.returncode != 0 and 'Operation not permitted' in p.stderr else f'{p.returncode}: {p.stderr.strip()}'",
      "command('unshare -U true', ['unshare', '-U', 'true'])",
      "command('unshare -r true', ['unshare', '-r', 'true'])",
      "os.makedirs('/tmp/x', exist_ok=True)",
      "p = subprocess.run(['mount', '-t', 'tmpfs', 'x', '/tmp/x'], capture_output=True, text=True)",
      "out['mount -t tmpfs x /tmp/x'] = 'failed' if p.returncode != 0 and not os.path.ismount('/tmp/x') else 'mounted'",
      "out['mount(2)'] = outcome(libc.mount(b'x', b'/tmp/x', b'tmpfs', L(0), None))",
      "if hasattr(os, 'unshare'):",
      '    try:',
      '        os.unshare(os.CLONE_NEWUSER)',
      "        out['unshare(CLONE_NEWUSER)'] = 'OK'",
      '    except OSError as e:',
      "        out['unshare(CLONE_NEWUSER)'] = errno.errorcode[e.errno]",
      'else:',
      "    out['unshare(CLONE_NEWUSER)'] = outcome(libc.unshare(0x10000000))",
      '# keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0): allowed to any process without the filter',
      "out['keyctl'] = outcome(libc.syscall(L(219 if arm else 250), L(0), L(-3), L(0)))",
      "child = subprocess.Popen(['sleep', '30'])",
      'try:',
      "    out['ptrace(PTRACE_ATTACH, own child)'] = outcome(libc.ptrace(L(16), L(child.pid), None, None))",
      'finally:',
      '    child.kill()',
      '    child.wait()',
      "out['clone3'] = outcome(libc.syscall(L(435), None, L(0)))",
      "status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines() if ':\\t' in line)",
      "out['Seccomp'] = status.get('Seccomp', '').strip()",
      'print(json.dumps(out))',
    ].join('\n');
    const result = await run(code);
    assert.deepEqual(JSON.parse(result.stdout), {
      'unshare -U true': 'EPERM',
      'unshare -r true': 'EPERM',
      'mount -t tmpfs x /tmp/x': 'failed',
      'mount(2)': 'EPERM',
      'unshare(CLONE_NEWUSER)': 'EPERM',
      keyctl: 'EPERM',
      'ptrace(PTRACE_ATTACH, own child)': 'EPERM',
      clone3: 'ENOSYS',
      Seccomp: '2',
    });
  });

  it('still runs ordinary work under the filter: python, pip, git, bash pipelines, node, opencode, threads, subprocesses', async () => {
    const code = [
      'import json, subprocess, threading',
      'checks = {',
      "    'python -c': ['python3', '-c', 'print(6 * 7)'],",
      "    'pip --version': ['python3', '-m', 'pip', '--version'],",
      "    'git': ['bash', '-c', 'cd \"$(mktemp -d)\" && git init -q && git -c user.email=a@b.c -c user.name=a commit -q --allow-empty -m first && git log --format=%s'],",
      "    'bash pipeline': ['bash', '-c', 'seq 1 10 | grep -v 5 | sort -rn | wc -l'],",
      "    'coreutils': ['bash', '-c', 'echo hi > /tmp/c.txt && cp /tmp/c.txt /tmp/d.txt && mv /tmp/d.txt /tmp/e.txt && cat /tmp/e.txt'],",
      "    'node -e': ['/run/opencode-env/bin/node', '-e', 'require(\"fs\").readFile(\"/etc/hostname\", () => console.log([1, 2, 3].map((x) => x * 2).join()))'],",
      "    'opencode --version': ['/run/opencode-env/bin/opencode', '--version'],",
      '}',
      'out = {}',
      'for name, argv in checks.items():',
      '    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)',
      '    lines = p.stdout.strip().splitlines()',
      "    out[name] = lines[-1] if p.returncode == 0 and lines else f'exit {p.returncode}: {p.stderr.strip()[-500:]}'",
      'squares = []',
      'threads = [threading.Thread(target=lambda i=i: squares.append(i * i)) for i in range(8)]',
      'for t in threads: t.start()',
      'for t in threads: t.join()',
      "out['threads'] = sorted(squares) == [i * i for i in range(8)]",
      'print(json.dumps(out))',
    ].join('\n');
    const out = JSON.parse((await run(code)).stdout) as Record<string, string | boolean>;
    assert.equal(out['python -c'], '42', JSON.stringify(out));
    assert.match(String(out['pip --version']), /^pip \d/, JSON.stringify(out));
    assert.equal(out.git, 'first', JSON.stringify(out));
    assert.equal(out['bash pipeline'], '9', JSON.stringify(out));
    assert.equal(out.coreutils, 'hi', JSON.stringify(out));
    assert.equal(out['node -e'], '2,4,6', JSON.stringify(out));
    assert.match(String(out['opencode --version']), /^\d+\.\d+\.\d+/, JSON.stringify(out));
    assert.equal(out.threads, true, JSON.stringify(out));
  });

  it('leaves no descriptor of the seccomp filter open in any sandbox process', async () => {
    const code = [
      'import glob, os',
      'leaks = []',
      "for fd_dir in glob.glob('/proc/[0-9]*/fd'):",
      '    try:',
      '        fds = os.listdir(fd_dir)',
      '    except OSError:',
      '        continue',
      '    for fd in fds:',
      '        try:',
      "            target = os.readlink(f'{fd_dir}/{fd}')",
      '        except OSError:',
      '            continue',
      "        if 'seccomp' in target or target.endswith('.bpf'):",
      "            leaks.append(f'{fd_dir}/{fd} -> {target}')",
      'print(leaks)',
    ].join('\n');
    assert.equal((await run(code)).stdout, '[]\n');
  });

  it('sees only the allow-listed host directories, its own /etc/passwd and a size-capped /dev/shm', async () => {
    const probeDir = makeTempDir('rootfs-probe');
    writeFileSync(path.join(probeDir, 'visible.txt'), 'host file');
    try {
      const code = [
        'import errno, json, os, pwd, sys',
        'def shm_write():',
        '    try:',
        "        with open('/dev/shm/big', 'wb') as f:",
        '            for _ in range(80):',
        "                f.write(b'\\0' * (1 << 20))",
        "        return 'fit'",
        '    except OSError as e:',
        '        return errno.errorcode[e.errno]',
        '    finally:',
        "        os.remove('/dev/shm/big')",
        "shm = os.statvfs('/dev/shm')",
        'print(json.dumps({',
        "    'root': sorted(os.listdir('/')),",
        "    'prefixes': sorted({sys.prefix, sys.base_prefix}),",
        `    'hidden': [p for p in ${JSON.stringify([probeDir, path.join(probeDir, 'visible.txt'), repoRoot, server.dataDir, server.sandboxRoot])} if os.path.exists(p)],`,
        "    'home': sorted(os.listdir('/home')),",
        "    'user': pwd.getpwuid(os.getuid()).pw_name,",
        "    'uid': os.getuid(),",
        "    'passwd': open('/etc/passwd').read().splitlines(),",
        "    'shm_bytes': shm.f_blocks * shm.f_frsize,",
        "    'shm_write': shm_write(),",
        '}))',
      ].join('\n');
      const out = JSON.parse((await run(code)).stdout) as {
        root: string[];
        prefixes: string[];
        hidden: string[];
        home: string[];
        user: string;
        uid: number;
        passwd: string[];
        shm_bytes: number;
        shm_write: string;
      };
      // The system directories, the sandbox's own, and the top of the Python install's path (e.g. /root for pyenv).
      const allowed = new Set(['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32', 'usr', 'etc', 'dev', 'proc', 'run', 'tmp', 'var', 'home']);
      for (const prefix of out.prefixes) allowed.add(prefix.split('/')[1]!);
      assert.deepEqual(
        out.root.filter((entry) => !allowed.has(entry)),
        [],
        `only allow-listed entries in / (${out.root.join(' ')})`,
      );
      for (const absent of ['work', 'srv', 'mnt', 'media', 'boot']) assert.ok(!out.root.includes(absent), `/${absent} is absent`);
      assert.deepEqual(out.hidden, [], 'host paths outside the allow-list are invisible');
      assert.deepEqual(out.home, ['user']);
      assert.equal(out.user, 'user');
      assert.ok(out.passwd.includes(`user:x:${out.uid}:${out.uid}:user:/home/user:/bin/bash`), out.passwd.join('\n'));
      assert.ok(!out.passwd.some((line) => line.startsWith('daemon:')), `the host's accounts are not listed: ${out.passwd.join('\n')}`);
      assert.ok(out.shm_bytes <= 64 * 1024 * 1024, `/dev/shm holds at most 64 MiB (${out.shm_bytes})`);
      assert.equal(out.shm_write, 'ENOSPC');
    } finally {
      removeDir(probeDir);
    }
  });

  it(
    'runs as an unprivileged user when the server runs as root',
    { skip: process.getuid?.() !== 0 ? 'server is not root' : false },
    async () => {
      const result = await run(
        "import os\nprint(os.getuid())\ntry:\n    open('/etc/shadow').read()\n    print('shadow readable')\nexcept OSError as e:\n    print(e.strerror)",
      );
      // A uid of the sandbox's own (uids.ts), or the shared 65534 where none can be leased.
      assert.match(result.stdout, /^(65534|19\d{8})\nPermission denied\n$/);
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
    assert.match(result.stdout, /^(65534|19\d{8})\nPermission denied\n$/, 'a uid of its own (or the shared 65534)');
    assert.equal((await server.callOk('get_state')).isolation, 'none');
    assert.doesNotMatch(server.stderr(), /bubblewrap/, 'no warning when plain processes were asked for');
  });
});
