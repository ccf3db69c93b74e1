// Covers the environment opencode runs with: offline and headless, and its history left alone unless asked.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { opencodeEnv } from '../../src/core/rollout/opencode.js';

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
});
