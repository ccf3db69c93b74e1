// Covers RolloutBudget: which calls a budget lets through, what it counts, and when it says it ended a run.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RolloutBudget } from '../../src/core/proxy/budget.js';

describe('a rollout budget', () => {
  it('lets max_llm_calls calls through and refuses the next, naming the budget', () => {
    const budget = new RolloutBudget({ maxLlmCalls: 2 });
    assert.equal(budget.admit(), true);
    assert.equal(budget.admit(), true);
    assert.equal(budget.ended, null, 'using the whole budget is not being ended by it');
    assert.equal(budget.admit(), false);
    assert.equal(budget.ended, 'max_llm_calls');
    assert.equal(budget.calls, 2, 'a refused call is not counted');
    assert.match(budget.message(), /max_llm_calls = 2/);
  });

  it('counts usage (total, or prompt + completion) and refuses once the tokens reach max_total_tokens', () => {
    const budget = new RolloutBudget({ maxTotalTokens: 100 });
    assert.equal(budget.admit(), true);
    budget.record({ total_tokens: 60 });
    assert.equal(budget.admit(), true);
    budget.record({ prompt_tokens: 30, completion_tokens: 15 });
    assert.equal(budget.tokens, 105);
    assert.equal(budget.admit(), false);
    assert.equal(budget.ended, 'max_total_tokens');
    assert.match(budget.message(), /max_total_tokens = 100.*105 tokens/);
  });

  it('without limits admits everything; an answer without usage counts nothing', () => {
    const budget = new RolloutBudget({});
    for (let i = 0; i < 1000; i++) assert.equal(budget.admit(), true, `call ${i}`);
    budget.record(null);
    budget.record({ total_tokens: 'many' });
    assert.equal(budget.tokens, 0);
    assert.equal(budget.ended, null);
  });

  it('names the first budget that ended the run, even when both are used up later', () => {
    const budget = new RolloutBudget({ maxLlmCalls: 1, maxTotalTokens: 10 });
    assert.equal(budget.admit(), true);
    budget.record({ total_tokens: 50 });
    assert.equal(budget.admit(), false);
    assert.equal(budget.ended, 'max_llm_calls');
  });
});
