import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bash, type Sandbox, type SandboxProvider } from '../src/sandbox/types.js';
import { isAlive } from '../src/util/process-tree.js';
import { sandboxContract } from './helpers/sandbox-contract.js';
import { localProvider } from './helpers/local-provider.js';
import { makeHomeDir, makeSystemTempDir, removeDir } from './helpers/server.js';

// The contract every backend keeps, run against the local backend in both of its isolation modes.
for (const isolation of ['auto', 'none'] as const) {
  const rootDir = makeSystemTempDir(`contract-${isolation}`);
  sandboxContract({
    name: `local (OPENCODE_ENV_ISOLATION=${isolation})`,
    createProvider: async () => localProvider(rootDir, { OPENCODE_ENV_ISOLATION: isolation }),
    cleanup: async () => removeDir(rootDir),
  });
}

// What only the local backend promises: host paths, symlinks and resource limits on this machine.
for (const isolation of ['auto', 'none'] as const) {
  describe(`local sandbox on the host (OPENCODE_ENV_ISOLATION=${isolation})`, () => {
    let rootDir: string;
    let provider: SandboxProvider;
    let sandbox: Sandbox;

    before(async () => {
      rootDir = makeSystemTempDir('sandbox-host');
      provider = localProvider(rootDir, { OPENCODE_ENV_ISOLATION: isolation });
      sandbox = await provider.create({ label: 'host', metadata: { owner: 'local-test' } });
    });
    after(async () => {
      await provider.killAll();
      removeDir(rootDir);
    });

    it('keeps its files in a directory of its own that records its owner', async () => {
      const hostDir = path.join(rootDir, `opencode-env-${sandbox.id}`);
      const owner = JSON.parse(readFileSync(path.join(hostDir, 'owner.json'), 'utf8'));
      assert.equal(owner.pid, process.pid);
      assert.deepEqual(owner.metadata, { owner: 'local-test' });
    });

    it('never follows a symlink planted by sandbox code out to the host', async () => {
      const hostSecretDir = makeHomeDir();
      const hostSecret = path.join(hostSecretDir, 'secret.txt');
      writeFileSync(hostSecret, 'host secret');
      try {
        await sandbox.run(bash(`ln -s ${hostSecret} link.txt; ln -s ${hostSecretDir} linkdir; ln -s /etc escape`), { timeoutMs: 10_000 });
        await assert.rejects(sandbox.readFile('link.txt'));
        await assert.rejects(sandbox.readFile('linkdir/secret.txt'), /not a directory|symlinks/);
        await assert.rejects(sandbox.writeFile('escape/opencode-env-probe', 'x'), /not a directory|symlinks/);
        assert.ok(!existsSync('/etc/opencode-env-probe'));
        const listing = await sandbox.listFiles(sandbox.workdir);
        assert.equal(listing.find((e) => e.path === 'linkdir')?.type, 'symlink');
        assert.ok(!listing.some((e) => e.path.startsWith('linkdir/')), 'listing does not descend into symlinks');
      } finally {
        removeDir(hostSecretDir);
      }
    });

    it('refuses paths outside its home and /tmp', async () => {
      await assert.rejects(sandbox.readFile('/etc/passwd'), /outside the sandbox/);
      await assert.rejects(sandbox.writeFile('../../escape.txt', 'x'), /outside the sandbox/);
    });

    it('kill removes its directory and every process', async () => {
      const victim = await provider.create({ label: 'victim' });
      const proc = await victim.start(bash('setsid sleep 300 & sleep 300'));
      const hostDir = path.join(rootDir, `opencode-env-${victim.id}`);
      assert.ok(existsSync(hostDir));
      await victim.kill();
      await proc.exited;
      assert.ok(!isAlive(proc.pid));
      assert.ok(!existsSync(hostDir));
    });
  });
}

describe('local sandbox resource limits', () => {
  let rootDir: string;
  let provider: SandboxProvider;
  let sandbox: Sandbox;

  before(async () => {
    rootDir = makeSystemTempDir('sandbox-limits');
    provider = localProvider(rootDir, { OPENCODE_ENV_LIMIT_FILE_MB: '1', OPENCODE_ENV_LIMIT_CPU_S: '1' });
    sandbox = await provider.create();
  });
  after(async () => {
    await provider.killAll();
    removeDir(rootDir);
  });

  it('stops a process that writes a file over the size limit', async () => {
    const result = await sandbox.run(bash('head -c 3000000 /dev/zero > big.bin'), { timeoutMs: 10_000 });
    assert.notEqual(result.exitCode, 0);
    const size = (await sandbox.listFiles(sandbox.workdir)).find((e) => e.path === 'big.bin')?.size;
    assert.equal(size, 1024 * 1024);
  });

  it('stops a process that uses more CPU time than allowed', async () => {
    const result = await sandbox.run(['python3', '-c', 'while True: pass'], { timeoutMs: 60_000 });
    assert.equal(result.timedOut, false, 'the CPU limit, not our deadline, ended it');
    assert.ok(result.exitCode > 128, `killed by a signal (exit ${result.exitCode})`);
  });
});
