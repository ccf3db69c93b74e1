// Covers the wire schemas: defaults, "" and null as "not given", the base_url alias, and that the published JSON Schemas agree with the parsers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { JsonSchemaType, JsonSchemaValidator } from '@modelcontextprotocol/sdk/validation';
import { z } from 'zod';
import { episodeStateSchema, resetRequestSchema, type EpisodeState } from '../../src/core/episode-schema.js';
import { executePythonRequestSchema, executePythonResultSchema, type ExecutePythonResult } from '../../src/core/python/schema.js';
import { rolloutRequestSchema, rolloutResultSchema, type RolloutResult } from '../../src/core/rollout/schema.js';

/**
 * The MCP SDK's own validator: Ajv with ajv-formats (so `format: uri` is checked), configured as SDK clients
 * use it. (ajv and ajv-formats come with the SDK; importing them directly would make them unlisted dependencies.)
 */
const validators = new AjvJsonSchemaValidator();

/** The JSON Schema as the server publishes it in tools/list (see src/mcp/tools.ts). */
function published(schema: z.ZodType, io: 'input' | 'output'): Record<string, any> {
  return z.toJSONSchema(schema, { target: 'draft-7', io }) as Record<string, any>;
}

type Validate = JsonSchemaValidator<unknown>;

function validatorFor(schema: z.ZodType, io: 'input' | 'output'): Validate {
  return validators.getValidator(published(schema, io) as JsonSchemaType);
}

/** Asserts that the server parses `input` AND the published schema accepts it. */
function assertAcceptedByBoth(schema: z.ZodType, validate: Validate, input: unknown): void {
  const parsed = schema.safeParse(input);
  assert.ok(parsed.success, `the server rejects ${JSON.stringify(input)}: ${parsed.success ? '' : parsed.error.message}`);
  const checked = validate(input);
  assert.ok(checked.valid, `the published schema rejects ${JSON.stringify(input)}: ${checked.errorMessage}`);
}

/** Asserts that the server rejects `input`, with an issue at `path` when given. */
function assertRejected(schema: z.ZodType, input: unknown, path?: PropertyKey[]): z.core.$ZodIssue[] {
  const parsed = schema.safeParse(input);
  if (parsed.success) assert.fail(`the server accepts ${JSON.stringify(input)}`);
  const issues = parsed.error.issues;
  if (path)
    assert.ok(
      issues.some((issue) => JSON.stringify(issue.path) === JSON.stringify(path)),
      `no issue at ${JSON.stringify(path)}: ${JSON.stringify(issues)}`,
    );
  return issues;
}

const OPTIONAL_ROLLOUT_FIELDS = Object.keys(rolloutRequestSchema.in.shape).filter((key) => key !== 'instruction');

describe('rolloutRequestSchema', () => {
  const minimal = rolloutRequestSchema.parse({ instruction: 'x' });

  it('applies the documented defaults', () => {
    assert.equal(minimal.mode, 'transparent_proxy');
    assert.equal(minimal.max_tokens_cap, 4096);
    assert.equal(minimal.top_logprobs, 5);
    assert.equal(minimal.agent_timeout_s, 600);
    assert.equal(minimal.setup_timeout_s, 120);
    assert.equal(minimal.verify_timeout_s, 120);
  });

  it('keeps given values over the defaults', () => {
    const spec = rolloutRequestSchema.parse({
      instruction: 'x',
      mode: 'black_box',
      max_tokens_cap: 10,
      top_logprobs: 0,
      agent_timeout_s: 1.5,
    });
    assert.equal(spec.mode, 'black_box');
    assert.equal(spec.max_tokens_cap, 10);
    assert.equal(spec.top_logprobs, 0, '0 is a value, not "not given"');
    assert.equal(spec.agent_timeout_s, 1.5);
  });

  it('treats "" and null as not given, for every optional field', () => {
    assert.ok(OPTIONAL_ROLLOUT_FIELDS.length >= 15, `expected the full field list, got ${OPTIONAL_ROLLOUT_FIELDS.join(', ')}`);
    for (const field of OPTIONAL_ROLLOUT_FIELDS) {
      for (const empty of ['', null]) {
        const parsed = rolloutRequestSchema.safeParse({ instruction: 'x', [field]: empty });
        assert.ok(parsed.success, `${field}: ${JSON.stringify(empty)} is rejected: ${parsed.success ? '' : parsed.error.message}`);
        assert.equal(
          (parsed.data as Record<string, unknown>)[field],
          (minimal as Record<string, unknown>)[field],
          `${field}: ${JSON.stringify(empty)}`,
        );
      }
    }
  });

  it('parses a request mixing "" and null like the minimal one', () => {
    const spec = rolloutRequestSchema.parse({ instruction: 'x', task_id: '', base_url: null, mode: '', max_tokens_cap: null });
    assert.equal(spec.task_id, undefined);
    assert.equal(spec.base_url, undefined);
    assert.equal(spec.mode, minimal.mode);
    assert.equal(spec.max_tokens_cap, minimal.max_tokens_cap);
  });

  it('resolves the vllm_url alias into base_url', () => {
    const spec = rolloutRequestSchema.parse({ instruction: 'x', vllm_url: 'http://gpu:8000/v1' });
    assert.equal(spec.base_url, 'http://gpu:8000/v1');
    assert.equal('vllm_url' in spec, false);
  });

  it('accepts base_url and vllm_url when they agree', () => {
    const url = 'http://gpu:8000/v1';
    assert.equal(rolloutRequestSchema.parse({ instruction: 'x', base_url: url, vllm_url: url }).base_url, url);
  });

  it('rejects base_url and vllm_url that differ, at vllm_url', () => {
    assertRejected(rolloutRequestSchema, { instruction: 'x', base_url: 'http://a:1/v1', vllm_url: 'http://b:2/v1' }, ['vllm_url']);
  });

  it('rejects unknown keys', () => {
    const issues = assertRejected(rolloutRequestSchema, { instruction: 'x', instructions: 'typo' });
    assert.match(JSON.stringify(issues), /instructions/);
  });

  for (const instruction of ['', '   ', '\n\t']) {
    it(`rejects the instruction ${JSON.stringify(instruction)}`, () => {
      assertRejected(rolloutRequestSchema, { instruction }, ['instruction']);
    });
  }

  it('rejects a missing instruction', () => {
    assertRejected(rolloutRequestSchema, {}, ['instruction']);
  });
});

describe('resetRequestSchema and executePythonRequestSchema', () => {
  it('reset takes null and "" as not given', () => {
    for (const input of [{ seed: null, episode_id: '' }, { seed: '', episode_id: null }, {}]) {
      const parsed = resetRequestSchema.parse(input);
      assert.equal(parsed.seed, undefined, JSON.stringify(input));
      assert.equal(parsed.episode_id, undefined, JSON.stringify(input));
    }
  });

  it('reset keeps given values, 0 included', () => {
    assert.deepEqual(resetRequestSchema.parse({ seed: 0, episode_id: 'ep-1' }), { seed: 0, episode_id: 'ep-1' });
  });

  it('reset rejects a negative or fractional seed and unknown keys', () => {
    assertRejected(resetRequestSchema, { seed: -1 }, ['seed']);
    assertRejected(resetRequestSchema, { seed: 1.5 }, ['seed']);
    assertRejected(resetRequestSchema, { episode: 'x' });
  });

  it('execute_python takes null and "" timeout_s as not given', () => {
    for (const timeout_s of [null, '']) {
      assert.equal(executePythonRequestSchema.parse({ code: 'print(1)', timeout_s }).timeout_s, undefined);
    }
    assert.equal(executePythonRequestSchema.parse({ code: 'print(1)', timeout_s: 2.5 }).timeout_s, 2.5);
  });

  it('execute_python rejects empty code', () => {
    assertRejected(executePythonRequestSchema, { code: '' }, ['code']);
  });
});

describe('published input schemas accept what the server accepts', () => {
  const resetValidate = validatorFor(resetRequestSchema, 'input');
  const pythonValidate = validatorFor(executePythonRequestSchema, 'input');
  const rolloutValidate = validatorFor(rolloutRequestSchema, 'input');

  it('reset', () => {
    for (const input of [{}, { seed: null, episode_id: '' }, { seed: '', episode_id: null }, { seed: 0, episode_id: 'ep-1' }]) {
      assertAcceptedByBoth(resetRequestSchema, resetValidate, input);
    }
  });

  it('execute_python', () => {
    for (const input of [{ code: 'x' }, { code: 'x', timeout_s: null }, { code: 'x', timeout_s: '' }, { code: 'x', timeout_s: 0.5 }]) {
      assertAcceptedByBoth(executePythonRequestSchema, pythonValidate, input);
    }
  });

  it('run_rollout with every optional field null, or every one ""', () => {
    for (const empty of [null, '']) {
      const input = Object.fromEntries([['instruction', 'x'], ...OPTIONAL_ROLLOUT_FIELDS.map((field) => [field, empty])]);
      assertAcceptedByBoth(rolloutRequestSchema, rolloutValidate, input);
    }
  });

  it('run_rollout with the mixed example and with real values', () => {
    assertAcceptedByBoth(rolloutRequestSchema, rolloutValidate, {
      instruction: 'x',
      task_id: '',
      base_url: null,
      mode: '',
      max_tokens_cap: null,
    });
    assertAcceptedByBoth(rolloutRequestSchema, rolloutValidate, {
      instruction: 'Write fizzbuzz.py',
      task_id: 'fizzbuzz-1',
      files: { 'tests/test_fizz.py': 'def test(): pass\n' },
      setup: ['pip install pytest'],
      verify: ['pytest -q'],
      test_script: 'pytest -q',
      endpoint: 'vllm',
      base_url: 'http://10.0.0.5:8000/v1',
      vllm_url: 'http://10.0.0.5:8000/v1',
      api_key: 'EMPTY',
      model: 'Qwen/Qwen3-4B',
      mode: 'black_box',
      disable_thinking: true,
      max_tokens_cap: 2048,
      top_logprobs: 0,
      agent_timeout_s: 30.5,
      setup_timeout_s: 10,
      verify_timeout_s: 10,
      template: 'python-3.12',
    });
  });

  it('run_rollout with the base URLs an inference server typically has', () => {
    for (const url of [
      'http://localhost:8000/v1',
      'http://127.0.0.1:8000/v1/',
      'http://[::1]:8000/v1',
      'http://gpu-node_3:8000/v1',
      'https://api.example.com/v1',
    ]) {
      assertAcceptedByBoth(rolloutRequestSchema, rolloutValidate, { instruction: 'x', base_url: url });
    }
  });

  // z.url() accepts anything `new URL()` parses; JSON Schema's "uri" format is ASCII-only RFC 3986.
  it('run_rollout with a base URL that has a non-ASCII host or path', () => {
    for (const url of ['https://例え.jp/v1', 'http://host/modèle/v1']) {
      assertAcceptedByBoth(rolloutRequestSchema, rolloutValidate, { instruction: 'x', base_url: url });
    }
  });

  it('and both reject unknown keys', () => {
    for (const [schema, validate, input] of [
      [rolloutRequestSchema, rolloutValidate, { instruction: 'x', extra: 1 }],
      [resetRequestSchema, resetValidate, { seed: 1, extra: 1 }],
      [executePythonRequestSchema, pythonValidate, { code: 'x', extra: 1 }],
    ] as const) {
      assert.equal(schema.safeParse(input).success, false);
      assert.equal(validate(input).valid, false);
    }
  });
});

describe('published output schemas', () => {
  const command = { cmd: 'pytest -q', exit_code: 0, stdout: '1 passed', stderr: '', duration_s: 1.2, timed_out: false };
  const rolloutResult: RolloutResult = {
    rollout_id: 'rollout-20240102T030405Z-deadbeef',
    task_id: 'fizzbuzz-1',
    sandbox_id: 'sbx-1',
    warm_start: false,
    reward: 0.5,
    rewards: { accuracy: 1 },
    agent_exit_code: 0,
    agent_timed_out: false,
    budget_exhausted: null,
    wall_s: 12.3,
    timings: { sandbox: 0.1, agent: 10 },
    mode: 'transparent_proxy',
    endpoint: { name: 'vllm', base_url: 'http://gpu:8000/v1', model: 'Qwen/Qwen3-4B' },
    template: null,
    setup_results: [command],
    verify_results: [command, { ...command, exit_code: null, timed_out: true }],
    proxy_turns: [
      {
        turn: 1,
        timestamp: '2024-01-02T03:04:05.000Z',
        kind: 'agent',
        session_id: 'ses_1',
        stream: true,
        injected: ['return_token_ids', 'logprobs'],
        latency_s: 1.5,
        ttfb_s: 0.2,
        upstream_status: 200,
        upstream_error: null,
        finish_reason: 'stop',
        usage: { prompt_tokens: 3, completion_tokens: 2 },
        completion_tokens: ['Hi', '!'],
        completion_token_ids: [9, 10],
        per_token_logps: [-0.1, null],
      },
      {
        turn: 2,
        timestamp: '2024-01-02T03:04:07.000Z',
        kind: 'title',
        session_id: null,
        stream: false,
        injected: [],
        latency_s: 0.1,
        ttfb_s: null,
        upstream_status: null,
        upstream_error: { type: 'connection', message: 'ECONNREFUSED' },
        finish_reason: null,
        usage: null,
        completion_tokens: [],
        completion_token_ids: [],
        per_token_logps: [],
      },
    ],
    agent_events: [{ type: 'step_start' }],
    files: { 'fizzbuzz.py': 'print(1)\n' },
    files_extra: ['.git/'],
    agent_log_tail: '',
    proxy_log_tail: '',
    error: null,
    error_kind: null,
    trace_uri: 'opencode-env://traces/rollout-20240102T030405Z-deadbeef',
  };
  const episodeState: EpisodeState = {
    episode_id: 'ep-1',
    step_count: 2,
    last_exit_code: null,
    rollouts_completed: 1,
    rollouts_cancelled: 0,
    last_reward: 1,
    last_task_id: 't',
    last_sandbox_id: null,
    seed: null,
    sandbox_backend: 'local',
    isolation: 'bubblewrap',
    sandbox_id: null,
    python_running: false,
  };
  const pythonResult: ExecutePythonResult = { stdout: '1\n', stderr: '', exit_code: 0, timed_out: false, state_lost: false, notice: null };

  const outputs = [
    { name: 'run_rollout', schema: rolloutResultSchema, sample: rolloutResult },
    { name: 'reset / get_state', schema: episodeStateSchema, sample: episodeState },
    { name: 'execute_python', schema: executePythonResultSchema, sample: pythonResult },
  ] as const;

  for (const { name, schema, sample } of outputs) {
    it(`${name}: a result the server returns validates against the published schema`, () => {
      const value = schema.parse(sample);
      const checked = validatorFor(schema, 'output')(value);
      assert.ok(checked.valid, `${name}: ${checked.errorMessage}`);
    });

    it(`${name}: the schema has a title and every top-level property a description`, () => {
      const json = published(schema, 'output');
      assert.equal(typeof json.title, 'string', `${name} has no title`);
      const undescribed = Object.entries(json.properties as Record<string, { description?: string }>)
        .filter(([, property]) => !property.description)
        .map(([key]) => key);
      assert.deepEqual(undescribed, [], `${name} (${json.title}): properties without a description: ${undescribed.join(', ')}`);
    });
  }
});
