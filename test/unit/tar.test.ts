// Covers src/util/tar.ts: packTar → unpackTar round trips, and interoperability with the real GNU tar in both directions.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { packTar, unpackTar, type TarEntry } from '../../src/util/tar.js';

/** Every byte value, twice, so a text decoding or a dropped NUL shows. */
const BINARY = Buffer.from([...Array(512).keys()].map((i) => i % 256));
/** 300 characters: too long for ustar's name field, and its first segment too long for the prefix field. */
const LONG_PATH = `${'a'.repeat(160)}/${'b'.repeat(60)}/${'c'.repeat(78)}`;
/** 211 characters that fit ustar's prefix + name split (its parent directories too, even with a './' in front). */
const SPLITTABLE_PATH = `${'p'.repeat(60)}/${'q'.repeat(50)}/${'n'.repeat(99)}`;
const UTF8_PATH = 'dossier-é/файл-日本.txt';

const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tar-test-'));
  tempDirs.push(dir);
  return dir;
}

/** Runs GNU tar, failing the test with its stderr when it fails. */
function gnuTar(args: string[], input?: Buffer): Buffer {
  const result = spawnSync('tar', args, { input, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  assert.equal(result.status, 0, `tar ${args.join(' ')} failed: ${result.stderr?.toString()}`);
  return result.stdout;
}

function byPath(entries: TarEntry[]): Map<string, TarEntry> {
  return new Map(entries.map((e) => [e.path, e]));
}

function entryAt(entries: Map<string, TarEntry>, name: string): TarEntry {
  const entry = entries.get(name);
  assert.ok(entry, `no entry ${name}; entries: ${[...entries.keys()].join(', ')}`);
  return entry;
}

describe('packTar → unpackTar', () => {
  it('round-trips binary content, empty files, a 300-char path, a prefix-split path and a UTF-8 path', () => {
    const archive = packTar(
      [
        { path: 'bin/data.bin', content: BINARY, mode: 0o755 },
        { path: 'empty.txt', content: '' },
        { path: LONG_PATH, content: 'long' },
        { path: SPLITTABLE_PATH, content: 'split' },
        { path: UTF8_PATH, content: 'héllo' },
      ],
      { mtimeSeconds: 1_700_000_000 },
    );
    assert.equal(archive.length % 512, 0, 'an archive is whole blocks');
    const entries = unpackTar(archive);
    assert.deepEqual(
      entries.map((e) => [e.path, e.type, e.size, e.mode]),
      [
        ['bin/data.bin', 'file', BINARY.length, 0o755],
        ['empty.txt', 'file', 0, 0o644],
        [LONG_PATH, 'file', 4, 0o644],
        [SPLITTABLE_PATH, 'file', 5, 0o644],
        [UTF8_PATH, 'file', Buffer.byteLength('héllo'), 0o644],
      ],
    );
    assert.ok(entries[0]?.content.equals(BINARY), 'binary content comes back byte for byte');
    assert.equal(entries[1]?.content.length, 0);
    assert.equal(entries[4]?.content.toString(), 'héllo');
  });

  it('packs nothing as just the two end blocks', () => {
    const archive = packTar([]);
    assert.equal(archive.length, 1024);
    assert.deepEqual(unpackTar(archive), []);
  });

  it('refuses a negative mtime rather than writing a corrupt header', () => {
    assert.throws(() => packTar([{ path: 'a', content: '' }], { mtimeSeconds: -1 }), /does not fit/);
  });

  it('refuses absolute paths, empty paths and ".." segments', () => {
    for (const bad of ['/etc/passwd', '', 'a/../b', '..', 'a//b']) {
      assert.throws(() => packTar([{ path: bad, content: 'x' }]), /cannot pack the path/, `packTar should refuse ${JSON.stringify(bad)}`);
    }
  });
});

describe('unpackTar on damaged archives', () => {
  const archive = packTar(
    [
      { path: 'a.txt', content: 'hello' },
      { path: 'b.txt', content: 'world' },
    ],
    { mtimeSeconds: 0 },
  );

  it('throws naming the offset on a bad checksum', () => {
    const corrupt = Buffer.from(archive);
    corrupt[512 + 512 + 10] = 0x41; // a byte of the second header's name
    assert.throws(() => unpackTar(corrupt), /offset 1024.*bad checksum/);
  });

  it('throws naming the offset when the data is cut short', () => {
    assert.throws(() => unpackTar(archive.subarray(0, 512 + 3)), /truncated.*offset 0/);
    assert.throws(() => unpackTar(archive.subarray(0, 1024 + 100)), /truncated.*offset 1024/);
  });

  it('stops at the end of the buffer when the end blocks are missing', () => {
    const entries = unpackTar(archive.subarray(0, 2048));
    assert.deepEqual(
      entries.map((e) => e.path),
      ['a.txt', 'b.txt'],
    );
  });
});

describe('packTar read by GNU tar -x', () => {
  it('gives the right files, names and modes', () => {
    const archive = packTar([
      { path: 'bin/run.sh', content: '#!/bin/sh\necho hi\n', mode: 0o755 },
      { path: 'data.bin', content: BINARY },
      { path: 'empty.txt', content: '' },
      { path: LONG_PATH, content: 'long' },
      { path: SPLITTABLE_PATH, content: 'split' },
      { path: UTF8_PATH, content: 'héllo' },
    ]);
    // GNU tar must see no problem with the archive: it warns (and exits non-zero) on bad headers or a lone zero block.
    const listing = gnuTar(['-t', '-f', '-'], archive).toString('utf8').trim().split('\n');
    assert.deepEqual(listing, ['bin/run.sh', 'data.bin', 'empty.txt', LONG_PATH, SPLITTABLE_PATH, UTF8_PATH]);

    const dir = tempDir();
    gnuTar(['-x', '--no-same-owner', '-f', '-', '-C', dir], archive);
    assert.equal(readFileSync(path.join(dir, 'bin/run.sh'), 'utf8'), '#!/bin/sh\necho hi\n');
    assert.equal(lstatSync(path.join(dir, 'bin/run.sh')).mode & 0o7777, 0o755, 'the executable mode survives');
    assert.ok(readFileSync(path.join(dir, 'data.bin')).equals(BINARY), 'binary content unpacks byte for byte');
    assert.equal(lstatSync(path.join(dir, 'data.bin')).mode & 0o7777, 0o644, 'the default mode is 0644');
    assert.equal(lstatSync(path.join(dir, 'empty.txt')).size, 0);
    assert.equal(readFileSync(path.join(dir, LONG_PATH), 'utf8'), 'long');
    assert.equal(readFileSync(path.join(dir, SPLITTABLE_PATH), 'utf8'), 'split');
    assert.equal(readFileSync(path.join(dir, UTF8_PATH), 'utf8'), 'héllo');
  });

  it('unpacks UTF-8 names intact under the C locale too', () => {
    const archive = packTar([{ path: UTF8_PATH, content: 'x' }]);
    const dir = tempDir();
    const result = spawnSync('tar', ['-x', '--no-same-owner', '-f', '-', '-C', dir], {
      input: archive,
      env: { PATH: process.env.PATH, LC_ALL: 'C' },
    });
    assert.equal(result.status, 0, `tar -x failed: ${result.stderr.toString()}`);
    assert.equal(readFileSync(path.join(dir, UTF8_PATH), 'utf8'), 'x');
  });
});

describe('GNU tar -c read by unpackTar', () => {
  /** A tree with a long path, a symlink (to a file outside), a subdir, an empty file, a binary file and a UTF-8 name. */
  function sourceTree(): string {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'sub'));
    writeFileSync(path.join(dir, 'sub/empty.txt'), '');
    writeFileSync(path.join(dir, 'data.bin'), BINARY);
    writeFileSync(path.join(dir, 'run.sh'), 'echo\n', { mode: 0o755 });
    mkdirSync(path.join(dir, path.dirname(LONG_PATH)), { recursive: true });
    writeFileSync(path.join(dir, LONG_PATH), 'long');
    mkdirSync(path.join(dir, path.dirname(UTF8_PATH)));
    writeFileSync(path.join(dir, UTF8_PATH), 'héllo');
    symlinkSync('/etc/hostname', path.join(dir, 'link'));
    return dir;
  }

  function checkTree(entries: Map<string, TarEntry>, options: { longPath: boolean }): void {
    assert.equal(entryAt(entries, '.').type, 'dir');
    assert.equal(entryAt(entries, 'sub').type, 'dir');
    const empty = entryAt(entries, 'sub/empty.txt');
    assert.deepEqual([empty.type, empty.size, empty.content.length], ['file', 0, 0]);
    const data = entryAt(entries, 'data.bin');
    assert.ok(data.type === 'file' && data.content.equals(BINARY), 'the binary file comes back byte for byte');
    assert.equal(entryAt(entries, 'run.sh').mode, 0o755);
    const link = entryAt(entries, 'link');
    assert.deepEqual(
      [link.type, link.linkTarget, link.content.length],
      ['symlink', '/etc/hostname', 0],
      'a symlink is reported, not followed',
    );
    assert.equal(entryAt(entries, UTF8_PATH).content.toString(), 'héllo');
    if (options.longPath) assert.equal(entryAt(entries, LONG_PATH).content.toString(), 'long');
  }

  for (const format of ['default', 'pax', 'gnu']) {
    it(`reads tar -c ${format === 'default' ? '(GNU tar default format)' : `--format=${format}`}`, () => {
      const dir = sourceTree();
      const formatArgs = format === 'default' ? [] : [`--format=${format}`];
      const archive = gnuTar(['-c', ...formatArgs, '-f', '-', '-C', dir, '.']);
      checkTree(byPath(unpackTar(archive)), { longPath: true });
    });
  }

  it('reads tar -c --format=ustar (names split across prefix and name)', () => {
    const dir = sourceTree();
    rmSync(path.join(dir, 'a'.repeat(160)), { recursive: true });
    mkdirSync(path.join(dir, path.dirname(SPLITTABLE_PATH)), { recursive: true });
    writeFileSync(path.join(dir, SPLITTABLE_PATH), 'split');
    const archive = gnuTar(['-c', '--format=ustar', '-f', '-', '-C', dir, '.']);
    const entries = byPath(unpackTar(archive));
    checkTree(entries, { longPath: false });
    assert.equal(entryAt(entries, SPLITTABLE_PATH).content.toString(), 'split');
  });

  it('reads a long symlink target (GNU K entry and pax linkpath)', () => {
    const dir = tempDir();
    const target = `/${'t'.repeat(150)}/${'u'.repeat(50)}`;
    symlinkSync(target, path.join(dir, 'far'));
    for (const formatArgs of [[], ['--format=pax']]) {
      const entries = byPath(unpackTar(gnuTar(['-c', ...formatArgs, '-f', '-', '-C', dir, 'far'])));
      const link = entryAt(entries, 'far');
      assert.deepEqual(
        [link.type, link.linkTarget],
        ['symlink', target],
        `long link target with ${formatArgs.join(' ') || 'default format'}`,
      );
      assert.equal(readlinkSync(path.join(dir, 'far')), target);
    }
  });

  it('reads tar -c --format=v7 (a directory is a trailing slash)', () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'sub'));
    writeFileSync(path.join(dir, 'sub/f.txt'), 'v7');
    const entries = byPath(unpackTar(gnuTar(['-c', '--format=v7', '-f', '-', '-C', dir, 'sub'])));
    assert.equal(entryAt(entries, 'sub').type, 'dir');
    assert.equal(entryAt(entries, 'sub/f.txt').content.toString(), 'v7');
  });

  it('reports a hard link as "other" with its target, without content', () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'first'), 'shared');
    linkSync(path.join(dir, 'first'), path.join(dir, 'second'));
    const entries = unpackTar(gnuTar(['-c', '-f', '-', '-C', dir, 'first', 'second']));
    assert.deepEqual(
      entries.map((e) => [e.path, e.type, e.linkTarget, e.content.toString()]),
      [
        ['first', 'file', undefined, 'shared'],
        ['second', 'other', 'first', ''],
      ],
    );
  });

  it('reads names given relative to / with --no-recursion, as the E2B backend asks for them', () => {
    const dir = sourceTree();
    const relative = path.join(dir, 'data.bin').slice(1);
    const archive = gnuTar(['-c', '-f', '-', '-C', '/', '--no-recursion', '--null', '-T', '-'], Buffer.from(`${relative}\0`));
    const entries = unpackTar(archive);
    assert.deepEqual(
      entries.map((e) => [e.path, e.type]),
      [[relative, 'file']],
    );
    assert.ok(entries[0]?.content.equals(BINARY), 'content read through -T');
  });
});
