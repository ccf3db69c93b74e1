// Covers the allow-list root filesystem's bubblewrap arguments (on this host's real layout) and the generated
// /etc/passwd and /etc/group.
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  accountFileArgs,
  groupFile,
  mountPointParentArgs,
  passwdFile,
  readOnlyAfterMountArgs,
  readOnlyRootArgs,
  scratchMountArgs,
  TMPFS_SIZE_BYTES,
} from '../../src/sandbox/local/rootfs.js';

/** The mounts as [option, ...operands] groups, for readable assertions. */
function mounts(args: string[]): string[][] {
  const arity: Record<string, number> = { '--ro-bind': 2, '--symlink': 2, '--tmpfs': 1, '--dir': 1, '--perms': 1, '--size': 1 };
  const out: string[][] = [];
  for (let i = 0; i < args.length;) {
    const n = arity[args[i]!];
    assert.ok(n !== undefined, `known option ${args[i]}`);
    out.push(args.slice(i, i + 1 + n));
    i += 1 + n;
  }
  return out;
}

const has = (list: string[][], ...mount: string[]) => list.some((m) => m.join(' ') === mount.join(' '));
const indexOf = (list: string[][], ...mount: string[]) => list.findIndex((m) => m.join(' ') === mount.join(' '));

describe('allow-list root filesystem', () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'rootfs-test-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('binds the system directories read-only, as symlinks where the host has symlinks, and nothing else', () => {
    const list = mounts(readOnlyRootArgs({ runtimePaths: [], hiddenPaths: [] }));
    assert.ok(has(list, '--ro-bind', '/usr', '/usr'), JSON.stringify(list));
    assert.ok(has(list, '--ro-bind', '/etc', '/etc'), JSON.stringify(list));
    for (const dir of ['/bin', '/sbin', '/lib', '/lib64']) {
      let entry: 'symlink' | 'dir' | 'none' = 'none';
      try {
        entry = lstatSync(dir).isSymbolicLink() ? 'symlink' : 'dir';
      } catch {
        // absent on this host
      }
      if (entry === 'symlink') assert.ok(has(list, '--symlink', readlinkSync(dir), dir), `${dir} as a symlink`);
      if (entry === 'dir') assert.ok(has(list, '--ro-bind', dir, dir), `${dir} bound`);
      if (entry === 'none') assert.ok(!list.some((m) => m.at(-1) === dir), `${dir} absent`);
    }
    for (const absent of ['/', '/home', '/root', '/work', '/srv', '/mnt', '/opt', '/var', '/tmp']) {
      assert.ok(!list.some((m) => m.at(-1) === absent), `${absent} is not bound`);
    }
  });

  it('binds runtime paths outside the system directories, once, at their own path', () => {
    const runtime = path.join(scratch, 'python');
    mkdirSync(runtime);
    const list = mounts(readOnlyRootArgs({ runtimePaths: [runtime, runtime, '/usr', '/no/such/prefix'], hiddenPaths: [] }));
    assert.equal(list.filter((m) => m.at(-1) === runtime).length, 1, JSON.stringify(list));
    assert.ok(has(list, '--ro-bind', runtime, runtime));
    assert.equal(list.filter((m) => m.at(-1) === '/usr').length, 1, '/usr is not bound a second time');
    assert.ok(!list.some((m) => m.at(-1) === '/no/such/prefix'), 'a missing prefix is skipped');
  });

  it('covers hidden directories that a bound directory would show, under the runtime paths inside them', () => {
    const runtime = path.join(scratch, 'venv');
    const hiddenInRuntime = path.join(runtime, 'secret');
    mkdirSync(hiddenInRuntime, { recursive: true });
    const hiddenSystem = '/usr/share';
    const runtimeInHidden = '/usr/share/' + existingDirUnder('/usr/share');
    const list = mounts(
      readOnlyRootArgs({ runtimePaths: [runtime, runtimeInHidden], hiddenPaths: [hiddenInRuntime, hiddenSystem, scratch, '/'] }),
    );
    assert.ok(indexOf(list, '--ro-bind', runtime, runtime) < indexOf(list, '--tmpfs', hiddenInRuntime), JSON.stringify(list));
    assert.ok(indexOf(list, '--ro-bind', '/usr', '/usr') < indexOf(list, '--tmpfs', hiddenSystem), JSON.stringify(list));
    assert.ok(indexOf(list, '--tmpfs', hiddenSystem) < indexOf(list, '--ro-bind', runtimeInHidden, runtimeInHidden), JSON.stringify(list));
    assert.ok(!has(list, '--tmpfs', scratch), 'a hidden directory nothing shows needs no cover');
    assert.ok(!has(list, '--tmpfs', '/'), 'the root is never covered');
  });

  it('caps every RAM-backed tmpfs, leaves /dev/shm and /var/tmp world-writable and /var read-only', () => {
    const args = scratchMountArgs();
    for (const dir of ['/dev/shm', '/run', '/var', '/var/tmp']) {
      const i = args.indexOf(dir);
      assert.deepEqual(args.slice(i - 3, i), ['--size', String(TMPFS_SIZE_BYTES), '--tmpfs'], `${dir} is size-capped`);
      const mode = dir === '/dev/shm' || dir === '/var/tmp' ? '01777' : '0755';
      assert.deepEqual(args.slice(i - 5, i - 3), ['--perms', mode], `${dir} has mode ${mode}`);
    }
    assert.ok(args.join(' ').endsWith('--remount-ro /var'), 'nothing but /var/tmp is writable under /var');
    assert.deepEqual(readOnlyAfterMountArgs(), ['--remount-ro', '/run', '--remount-ro', '/']);
  });

  it('makes the missing parents of a mount point traversable (bubblewrap would make them 0700)', () => {
    assert.deepEqual(mountPointParentArgs('/home/user'), ['--perms', '0755', '--dir', '/home']);
    assert.deepEqual(mountPointParentArgs('/logs/verifier'), ['--perms', '0755', '--dir', '/logs']);
    const run = [{ path: '/run', showsHost: false }];
    assert.deepEqual(
      mountPointParentArgs('/run/systemd/resolve', run),
      ['--perms', '0755', '--dir', '/run/systemd'],
      'under an empty tmpfs',
    );
    const runtime = path.join(scratch, 'deep', 'prefix');
    mkdirSync(runtime, { recursive: true });
    const list = mounts(readOnlyRootArgs({ runtimePaths: [runtime], hiddenPaths: [] }));
    const ancestors = path
      .dirname(runtime)
      .split('/')
      .filter(Boolean)
      .map((_, i, parts) => `/${parts.slice(0, i + 1).join('/')}`);
    const bind = indexOf(list, '--ro-bind', runtime, runtime);
    assert.deepEqual(
      list.slice(bind - 2 * ancestors.length, bind),
      ancestors.flatMap((a) => [
        ['--perms', '0755'],
        ['--dir', a],
      ]),
      'every missing parent is made 0755, shallowest first, before the bind',
    );
    assert.ok(!list.some((m) => m[0] === '--dir' && m[1] === '/usr'), 'nothing is made under a bound system directory');
  });
});

function existingDirUnder(dir: string): string {
  const name = ['doc', 'man', 'misc', 'common-licenses'].find((n) => {
    try {
      return statSync(path.join(dir, n)).isDirectory();
    } catch {
      return false;
    }
  });
  assert.ok(name, `a directory under ${dir}`);
  return name;
}

describe('sandbox accounts', () => {
  const accounts = [
    { name: 'user', uid: 70000, home: '/home/user' },
    { name: 'verifier', uid: 70001, home: '/home/verifier' },
  ];

  it('lists the sandbox users first, then root and nobody', () => {
    assert.equal(
      passwdFile(accounts),
      [
        'user:x:70000:70000:user:/home/user:/bin/bash',
        'verifier:x:70001:70001:verifier:/home/verifier:/bin/bash',
        'root:x:0:0:root:/root:/usr/sbin/nologin',
        'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
        '',
      ].join('\n'),
    );
    assert.equal(groupFile(accounts), 'user:x:70000:\nverifier:x:70001:\nroot:x:0:\nnogroup:x:65534:\n');
  });

  it('leaves out a system account whose id a sandbox user has (the shared 65534, or a server keeping uid 0)', () => {
    const shared = passwdFile([{ name: 'user', uid: 65534, home: '/home/user' }]);
    assert.equal(shared, 'user:x:65534:65534:user:/home/user:/bin/bash\nroot:x:0:0:root:/root:/usr/sbin/nologin\n');
    assert.doesNotMatch(groupFile([{ name: 'user', uid: 0, home: '/home/user' }]), /^root/m);
  });

  it('writes the files once, world-readable, and binds them over /etc/passwd and /etc/group', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rootfs-accounts-'));
    try {
      const etc = path.join(dir, 'etc');
      const args = accountFileArgs(etc, accounts);
      assert.deepEqual(args, ['--ro-bind', path.join(etc, 'passwd'), '/etc/passwd', '--ro-bind', path.join(etc, 'group'), '/etc/group']);
      assert.equal(readFileSync(path.join(etc, 'passwd'), 'utf8'), passwdFile(accounts));
      assert.equal(statSync(path.join(etc, 'passwd')).mode & 0o777, 0o644);
      accountFileArgs(etc, [{ name: 'other', uid: 1, home: '/' }]);
      assert.equal(readFileSync(path.join(etc, 'group'), 'utf8'), groupFile(accounts), 'a sandbox keeps its first files');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
