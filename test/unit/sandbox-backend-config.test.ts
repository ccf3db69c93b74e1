// Covers how loadConfig picks the sandbox backend (OPENCODE_ENV_SANDBOX=auto|e2b|local) and the E2B settings.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

describe('loadConfig: the sandbox backend', () => {
  it('auto (the default) is local without E2B_API_KEY and e2b with it', () => {
    const local = loadConfig({}).sandbox;
    assert.equal(local.backend, 'local');
    assert.equal(local.e2b, null);
    assert.match(local.reason, /E2B_API_KEY is not set/);
    const e2b = loadConfig({ E2B_API_KEY: 'e2b_key' }).sandbox;
    assert.equal(e2b.backend, 'e2b');
    assert.match(e2b.reason, /E2B_API_KEY is set/);
    assert.equal(e2b.e2b?.apiKey, 'e2b_key');
  });

  it('an empty E2B_API_KEY counts as unset, as shells and .env files leave it', () => {
    assert.equal(loadConfig({ E2B_API_KEY: '' }).sandbox.backend, 'local');
  });

  it('local wins over a key that is set', () => {
    assert.equal(loadConfig({ OPENCODE_ENV_SANDBOX: 'local', E2B_API_KEY: 'e2b_key' }).sandbox.backend, 'local');
  });

  it('e2b without a key is a start-up error that names the variable', () => {
    assert.throws(
      () => loadConfig({ OPENCODE_ENV_SANDBOX: 'e2b' }),
      (error: unknown) =>
        error instanceof ConfigError && /E2B_API_KEY/.test(error.message) && /OPENCODE_ENV_SANDBOX=e2b/.test(error.message),
    );
  });

  it('an unknown backend names the variable and the choices', () => {
    assert.throws(
      () => loadConfig({ OPENCODE_ENV_SANDBOX: 'docker' }),
      (error: unknown) => error instanceof ConfigError && /OPENCODE_ENV_SANDBOX/.test(error.message) && /e2b/.test(error.message),
    );
  });

  it('E2B settings: template, creation pace and lifetime from their variables, with defaults; a fresh instance id per load', () => {
    const defaults = loadConfig({ E2B_API_KEY: 'e2b_key' }).sandbox.e2b;
    assert.equal(defaults?.template, 'opencode-env');
    assert.equal(defaults?.createPerSecond, 1);
    assert.equal(defaults?.defaultLifetimeMs, 3_600_000);
    const set = loadConfig({
      E2B_API_KEY: 'e2b_key',
      OPENCODE_ENV_E2B_TEMPLATE: 'my-template',
      OPENCODE_ENV_E2B_CREATE_PER_S: '5',
      OPENCODE_ENV_E2B_LIFETIME_S: '600',
    }).sandbox.e2b;
    assert.equal(set?.template, 'my-template');
    assert.equal(set?.createPerSecond, 5);
    assert.equal(set?.defaultLifetimeMs, 600_000);
    assert.notEqual(set?.serverInstanceId, defaults?.serverInstanceId, 'each server process has its own instance id');
  });

  it("never copies the SDK's own variables into its settings: the SDK reads them itself", () => {
    const e2b = loadConfig({
      E2B_API_KEY: 'e2b_key',
      E2B_API_URL: 'http://127.0.0.1:1',
      E2B_SANDBOX_URL: 'http://127.0.0.1:2',
      E2B_DOMAIN: 'x',
    }).sandbox.e2b;
    assert.equal(e2b?.apiUrl, undefined);
    assert.equal(e2b?.sandboxUrl, undefined);
    assert.equal(e2b?.domain, undefined);
  });
});
