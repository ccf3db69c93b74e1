// Covers the environment opencode runs with: offline and headless, and its history left alone unless asked.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { modelBindingFiles, OPENCODE_HOME_FILES, opencodeEnv } from '../../src/core/rollout/opencode.js';

const settings = { model: 'm', maxTokensCap: 1024, baseUrl: 'http://127.0.0.1:1/v1' };

describe("opencode's environment", () => {
  it('keeps opencode from compacting or pruning its history by default, so a session merges into one sequence', () => {
    const env = opencodeEnv(settings, '/home/user');
    assert.equal(env.OPENCODE_DISABLE_AUTOCOMPACT, '1');
    assert.equal(env.OPENCODE_DISABLE_PRUNE, '1');
  });

  it('lets it compact and prune when auto_compact asks for it', () => {
    const env = opencodeEnv({ ...settings, autoCompact: true }, '/home/user');
    assert.equal(env.OPENCODE_DISABLE_AUTOCOMPACT, undefined);
    assert.equal(env.OPENCODE_DISABLE_PRUNE, undefined);
  });

  it('runs offline with its state under the sandbox home, reaching the model only through the given base URL', () => {
    const env = opencodeEnv(settings, '/home/user');
    assert.equal(env.OPENCODE_DISABLE_MODELS_FETCH, '1');
    assert.equal(env.XDG_DATA_HOME, '/home/user/.local/share');
    const config = JSON.parse(env.OPENCODE_CONFIG_CONTENT!) as { provider: { llm: { options: { baseURL: string; apiKey: string } } } };
    assert.equal(config.provider.llm.options.baseURL, 'http://127.0.0.1:1/v1');
    assert.equal(config.provider.llm.options.apiKey, 'opencode-env-proxy', 'a placeholder: the real key stays in the proxy');
  });

  it('gives opencode an empty model catalogue from its home, not the built-in one it rebuilds per instance', () => {
    const env = opencodeEnv(settings, '/home/user');
    const file = env.OPENCODE_MODELS_PATH!;
    assert.ok(file.startsWith('/home/user/'), `the catalogue is under the home: ${file}`);
    assert.equal(OPENCODE_HOME_FILES[file.slice('/home/user/'.length)], '{}');
  });

  it('starts an unbound opencode with {file:} references that give, once bound, what a cold run is given inline', () => {
    const home = '/home/user';
    for (const model of ['qwen3-coder', 'gpt-4o "quoted" \\ back', 'ünïcode/model:7b']) {
      const bound = { ...settings, model, disableThinking: true };
      const unbound = opencodeEnv({ baseUrl: settings.baseUrl, disableThinking: true }, home).OPENCODE_CONFIG_CONTENT!;
      const files = modelBindingFiles(bound, home);
      assert.ok(files, `${model} can be bound`);
      // opencode's substitution: each reference replaced by the file's text, escaped as inside a JSON string.
      const substituted = unbound.replace(/\{file:([^}]+)\}/g, (_, file: string) => {
        assert.ok(file in files, `a reference to a binding file: ${file}`);
        return JSON.stringify(files[file]).slice(1, -1);
      });
      assert.deepEqual(JSON.parse(substituted), JSON.parse(opencodeEnv(bound, home).OPENCODE_CONFIG_CONTENT!), model);
    }
  });

  it('binds no model id that the substitution would not give back as it is (those rollouts start cold)', () => {
    for (const model of [' padded', 'trailing\n', 'a{file:/etc/passwd}', 'b}']) {
      assert.equal(modelBindingFiles({ model, maxTokensCap: 1 }, '/home/user'), null, JSON.stringify(model));
    }
  });
});
