// Covers validateStagedPath: which paths of run_rollout's `files` may be written into the workdir.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateStagedPath } from '../../src/core/rollout/files.js';

describe('validateStagedPath', () => {
  for (const path of ['a.txt', 'dir/sub/b.py', '.hidden', 'dir/.config/x', 'a..b.txt', '...', 'x/..y/z', './a.txt']) {
    it(`accepts ${JSON.stringify(path)}`, () => {
      assert.equal(validateStagedPath(path), null);
    });
  }

  for (const path of ['', '/etc/passwd', '/', '..', '../x', 'a/../../x', 'a/..', 'dir/sub/../../..', 'a/b/../c']) {
    it(`rejects ${JSON.stringify(path)}, naming it in the message`, () => {
      const problem = validateStagedPath(path);
      assert.notEqual(problem, null);
      assert.ok(problem!.includes(JSON.stringify(path)), `${JSON.stringify(problem)} should quote the path`);
      assert.match(problem!, /^files: /);
    });
  }
});
