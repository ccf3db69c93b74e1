// Covers resolveEndpoint (which LLM endpoint a rollout uses) and the endpoint catalog and validation of loadConfig.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { redactUrl, resolveEndpoint, urlCredentials, type EndpointCatalog } from '../../src/core/rollout/endpoints.js';
import { ConfigError, InvalidInputError } from '../../src/errors.js';

const catalog: EndpointCatalog = {
  vllm: { baseUrl: null, apiKey: '', model: 'vllm-default-model', urlVariable: 'VLLM_URL' },
  openai: { baseUrl: 'https://openai.example/v1', apiKey: 'sk-catalog-key', model: 'catalog-model', urlVariable: 'OPENAI_BASE_URL' },
  hf_router: { baseUrl: 'https://router.example/v1', apiKey: 'hf-key', model: 'hf-model', urlVariable: 'HF_ROUTER_BASE_URL' },
};

/** Asserts that `fn` throws an InvalidInputError whose message contains every one of `words`. */
function assertInvalidInput(fn: () => unknown, ...words: string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${String(error)}`);
    for (const word of words) assert.ok(error.message.includes(word), `message ${JSON.stringify(error.message)} should name ${word}`);
    return true;
  });
}

describe('resolveEndpoint without a named endpoint', () => {
  it('explicit base_url and model make a custom endpoint, trailing slashes dropped', () => {
    assert.deepEqual(resolveEndpoint({ baseUrl: 'http://127.0.0.1:8000/v1///', model: 'm', apiKey: 'k' }, catalog), {
      name: 'custom',
      baseUrl: 'http://127.0.0.1:8000/v1',
      apiKey: 'k',
      model: 'm',
    });
  });

  it('the api key defaults to empty', () => {
    assert.equal(resolveEndpoint({ baseUrl: 'https://x.example/v1', model: 'm' }, catalog).apiKey, '');
  });

  it('a missing model is invalid input naming `endpoint` and `base_url`', () => {
    assertInvalidInput(() => resolveEndpoint({ baseUrl: 'https://x.example/v1' }, catalog), '`endpoint`', '`base_url`');
  });

  it('a missing base_url is invalid input naming `endpoint` and `base_url`', () => {
    assertInvalidInput(() => resolveEndpoint({ model: 'm' }, catalog), '`endpoint`', '`base_url`');
  });

  it('nothing at all is invalid input', () => {
    assertInvalidInput(() => resolveEndpoint({}, catalog), '`endpoint`', '`base_url`');
  });

  for (const url of ['ftp://x.example/v1', 'file:///etc/passwd', 'not a url']) {
    it(`base_url ${JSON.stringify(url)} is invalid input naming base_url`, () => {
      assertInvalidInput(() => resolveEndpoint({ baseUrl: url, model: 'm' }, catalog), 'base_url');
    });
  }
});

describe('resolveEndpoint with a named endpoint', () => {
  it('uses the catalog values', () => {
    const { baseUrl, apiKey, model } = catalog.openai;
    assert.deepEqual(resolveEndpoint({ endpoint: 'openai' }, catalog), { name: 'openai', baseUrl, apiKey, model });
  });

  it('explicit values override each catalog value, and the name stays', () => {
    assert.deepEqual(
      resolveEndpoint({ endpoint: 'hf_router', baseUrl: 'http://mirror.example/v1/', apiKey: 'mine', model: 'other' }, catalog),
      { name: 'hf_router', baseUrl: 'http://mirror.example/v1', apiKey: 'mine', model: 'other' },
    );
  });

  it('overriding only the model keeps the catalog url and key', () => {
    const resolved = resolveEndpoint({ endpoint: 'openai', model: 'gpt-x' }, catalog);
    assert.equal(resolved.model, 'gpt-x');
    assert.equal(resolved.baseUrl, catalog.openai.baseUrl);
    assert.equal(resolved.apiKey, catalog.openai.apiKey);
  });

  it('an endpoint without a configured url is invalid input naming its variable', () => {
    assertInvalidInput(() => resolveEndpoint({ endpoint: 'vllm' }, catalog), catalog.vllm.urlVariable, 'vllm');
  });

  it('an endpoint without a configured url works when base_url is given', () => {
    const resolved = resolveEndpoint({ endpoint: 'vllm', baseUrl: 'http://gpu:8000/v1' }, catalog);
    assert.deepEqual(resolved, { name: 'vllm', baseUrl: 'http://gpu:8000/v1', apiKey: '', model: catalog.vllm.model });
  });

  it("a caller's base_url never gets the configured key (it could be the caller's own server)", () => {
    for (const baseUrl of ['https://attacker.example/v1', 'https://openai.example/v1/other', 'http://openai.example/v1']) {
      const resolved = resolveEndpoint({ endpoint: 'openai', baseUrl }, catalog);
      assert.equal(resolved.apiKey, '', `the key went to ${baseUrl}`);
    }
  });

  it("a caller's base_url gets the caller's own api_key", () => {
    assert.equal(
      resolveEndpoint({ endpoint: 'openai', baseUrl: 'https://mirror.example/v1', apiKey: 'sk-mine' }, catalog).apiKey,
      'sk-mine',
    );
  });

  it('naming the configured url itself keeps the configured key', () => {
    assert.equal(resolveEndpoint({ endpoint: 'openai', baseUrl: 'https://openai.example/v1/' }, catalog).apiKey, catalog.openai.apiKey);
  });

  it('a non-http(s) base_url override is invalid input naming base_url', () => {
    assertInvalidInput(() => resolveEndpoint({ endpoint: 'openai', baseUrl: 'ws://x.example/v1' }, catalog), 'base_url');
  });
});

/** Asserts that loading `env` throws a ConfigError naming `variable`. */
function assertConfigError(env: NodeJS.ProcessEnv, variable: string): void {
  assert.throws(
    () => loadConfig(env),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
      assert.ok(error.message.includes(variable), `message ${JSON.stringify(error.message)} should name ${variable}`);
      return true;
    },
  );
}

describe('loadConfig: the endpoint catalog', () => {
  it('has the documented defaults when nothing is set', () => {
    const { endpoints } = loadConfig({}).rollouts;
    assert.equal(endpoints.openai.baseUrl, 'https://api.openai.com/v1');
    assert.equal(endpoints.openai.model, 'gpt-4o-mini');
    assert.equal(endpoints.openai.apiKey, '');
    assert.equal(endpoints.vllm.baseUrl, null);
    assert.equal(endpoints.vllm.urlVariable, 'VLLM_URL');
    assert.equal(endpoints.hf_router.urlVariable, 'HF_ROUTER_BASE_URL');
  });

  it('environment variables override the defaults; a trailing slash is dropped from a url', () => {
    const { endpoints } = loadConfig({ VLLM_URL: 'http://gpu-box:8000/v1/', VLLM_MODEL: 'my-model', VLLM_API_KEY: 'secret-key' }).rollouts;
    assert.deepEqual(endpoints.vllm, {
      baseUrl: 'http://gpu-box:8000/v1',
      apiKey: 'secret-key',
      model: 'my-model',
      urlVariable: 'VLLM_URL',
    });
  });

  it('empty endpoint variables count as unset', () => {
    const defaults = loadConfig({}).rollouts.endpoints;
    const { endpoints } = loadConfig({ VLLM_URL: '', OPENAI_BASE_URL: '', OPENAI_MODEL: '', OPENAI_API_KEY: '' }).rollouts;
    assert.deepEqual(endpoints, defaults);
  });

  for (const value of ['ftp://x', 'not a url']) {
    it(`VLLM_URL=${JSON.stringify(value)} fails at load time with a ConfigError naming VLLM_URL`, () => {
      assertConfigError({ VLLM_URL: value }, 'VLLM_URL');
    });
  }

  it('an invalid OPENAI_BASE_URL is named too', () => {
    assertConfigError({ OPENAI_BASE_URL: 'gopher://old' }, 'OPENAI_BASE_URL');
  });
});

describe('loadConfig: other settings', () => {
  it('reads MAX_CONCURRENT_ENVS as a number', () => {
    assert.equal(loadConfig({ MAX_CONCURRENT_ENVS: '7' }).rollouts.maxConcurrent, 7);
  });

  for (const [variable, value] of [
    ['MAX_CONCURRENT_ENVS', '0'],
    ['MAX_CONCURRENT_ENVS', 'many'],
    ['OPENCODE_ENV_LOG_LEVEL', 'loud'],
    ['OPENCODE_ENV_ISOLATION', 'docker'],
    ['OPENCODE_ENV_LIMIT_CPU_S', '-1'],
  ] as const) {
    it(`${variable}=${value} is a ConfigError naming ${variable}`, () => {
      assertConfigError({ [variable]: value }, variable);
    });
  }

  it('reports every invalid variable at once', () => {
    assert.throws(
      () => loadConfig({ MAX_CONCURRENT_ENVS: '0', VLLM_URL: 'ftp://x' }),
      /MAX_CONCURRENT_ENVS.*VLLM_URL|VLLM_URL.*MAX_CONCURRENT_ENVS/,
    );
  });

  // `present()` in config.ts says "Empty variables count as unset, as shells and .env files often leave them";
  // a `VAR=` line in a .env file should not stop the server from starting.
  it('an empty server setting counts as unset (its default applies)', () => {
    const defaults = loadConfig({});
    const variables = [
      'MAX_CONCURRENT_ENVS',
      'OPENCODE_ENV_LOG_LEVEL',
      'OPENCODE_ENV_ISOLATION',
      'OPENCODE_ENV_SANDBOX_DIR',
      'OPENCODE_ENV_DATA_DIR',
      'OPENCODE_ENV_OPENCODE_BIN',
      'XDG_DATA_HOME',
    ];
    const rejected: string[] = [];
    for (const variable of variables) {
      try {
        assert.deepEqual(loadConfig({ [variable]: '' }), defaults);
      } catch (error) {
        rejected.push(`${variable}: ${(error as Error).message}`);
      }
    }
    assert.deepEqual(rejected, [], `empty variables that do not count as unset:\n${rejected.join('\n')}`);
  });
});

describe('credentials in URLs', () => {
  const url = 'https://alice:s3cret-pass@llm.example/v1?api_key=abc123xyz789&api-version=2024-06';

  it('redactUrl hides user info and secret-looking query values, and keeps the rest', () => {
    const redacted = redactUrl(url);
    for (const secret of ['alice', 's3cret-pass', 'abc123xyz789']) assert.ok(!redacted.includes(secret), `${secret} left in ${redacted}`);
    assert.ok(
      redacted.includes('llm.example/v1') && redacted.includes('api-version=2024-06'),
      `host, path or harmless query lost: ${redacted}`,
    );
  });

  it('urlCredentials lists what must be scrubbed wherever it appears', () => {
    const found = urlCredentials(url);
    for (const secret of ['alice', 's3cret-pass', 'abc123xyz789'])
      assert.ok(found.includes(secret), `${secret} not listed in ${found.join(',')}`);
    assert.ok(!found.includes('2024-06'), 'a harmless query value was listed as a secret');
  });

  it('a URL without credentials is unchanged and has none', () => {
    assert.equal(redactUrl('http://gpu:8000/v1'), 'http://gpu:8000/v1');
    assert.deepEqual(urlCredentials('http://gpu:8000/v1'), []);
  });
});
