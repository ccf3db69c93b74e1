// Covers decideReward: which verifier output decides a rollout's reward, and how unusable output is reported.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommandRecord } from '../../src/core/rollout/schema.js';
import { decideReward, type VerifierOutputs } from '../../src/core/rollout/verifier.js';

/** A finished command; `exit_code: null` means it was killed (time limit or cancellation). */
function command(exit_code: number | null, cmd = 'true'): CommandRecord {
  return { cmd, exit_code, stdout: '', stderr: '', duration_s: 0.1, timed_out: exit_code === null };
}

const nothing: VerifierOutputs = { rewardTxt: null, rewardJson: null, testScript: null, verify: [] };

function outputs(overrides: Partial<VerifierOutputs>): VerifierOutputs {
  return { ...nothing, ...overrides };
}

describe('decideReward precedence', () => {
  // Every source present, each pointing at a different reward, so the winner is unambiguous.
  const all = outputs({
    rewardTxt: '0.125',
    rewardJson: '{"reward": 0.5}',
    testScript: command(0), // alone it would give 1
    verify: [command(0), command(1), command(1), command(1)], // alone it would give 1/4
  });

  it('reward.txt beats reward.json, test_script and verify', () => {
    const outcome = decideReward(all);
    assert.equal(outcome.source, 'reward.txt');
    assert.equal(outcome.reward, 0.125);
  });

  it('reward.json beats test_script and verify when there is no reward.txt', () => {
    const outcome = decideReward({ ...all, rewardTxt: null });
    assert.equal(outcome.source, 'reward.json');
    assert.equal(outcome.reward, 0.5);
  });

  it('test_script beats verify when there are no reward files', () => {
    const outcome = decideReward({ ...all, rewardTxt: null, rewardJson: null });
    assert.equal(outcome.source, 'test_script');
    assert.equal(outcome.reward, 1);
  });

  it('verify decides when nothing else is there', () => {
    const outcome = decideReward({ ...all, rewardTxt: null, rewardJson: null, testScript: null });
    assert.equal(outcome.source, 'verify');
    assert.equal(outcome.reward, 1 / 4);
  });

  it('without any verifier the reward is null, with source none and no problem', () => {
    assert.deepEqual(decideReward(nothing), { reward: null, rewards: {}, problem: null, source: 'none' });
  });

  it('an unusable reward.txt still wins: it does not fall through to reward.json', () => {
    const outcome = decideReward(outputs({ rewardTxt: 'oops', rewardJson: '{"reward": 1}', testScript: command(0) }));
    assert.equal(outcome.source, 'reward.txt');
    assert.equal(outcome.reward, null);
    assert.notEqual(outcome.problem, null);
  });
});

describe('reward.txt', () => {
  it('reads a number surrounded by whitespace and newlines', () => {
    assert.deepEqual(decideReward(outputs({ rewardTxt: '  \n0.75\n\n' })), {
      reward: 0.75,
      rewards: {},
      problem: null,
      source: 'reward.txt',
    });
  });

  it('reads integers, negatives and exponents as numbers', () => {
    for (const [text, value] of [
      ['1', 1],
      ['0', 0],
      ['-2.5', -2.5],
      ['1e-3', 0.001],
    ] as const) {
      assert.equal(decideReward(outputs({ rewardTxt: `${text}\n` })).reward, value, text);
    }
  });

  for (const text of ['', '   \n', 'pass', '1 2', 'NaN', 'Infinity', '0.5abc']) {
    it(`${JSON.stringify(text)} is a problem with reward null, naming the file`, () => {
      const outcome = decideReward(outputs({ rewardTxt: text }));
      assert.equal(outcome.reward, null);
      assert.equal(outcome.source, 'reward.txt');
      assert.match(outcome.problem ?? '', /reward\.txt/);
    });
  }
});

describe('reward.json', () => {
  it('accepts a bare number', () => {
    assert.deepEqual(decideReward(outputs({ rewardJson: '0.4' })), { reward: 0.4, rewards: {}, problem: null, source: 'reward.json' });
  });

  it('takes `reward` and turns the other numeric keys into `rewards`, ignoring non-numeric ones', () => {
    const file = { reward: 0.6, accuracy: 0.9, style: 1, passed: true, note: 'fine', nested: { x: 1 }, list: [1], missing: null };
    const outcome = decideReward(outputs({ rewardJson: JSON.stringify(file) }));
    assert.equal(outcome.reward, 0.6);
    assert.deepEqual(outcome.rewards, { accuracy: 0.9, style: 1 });
    assert.equal(outcome.problem, null);
    assert.equal(outcome.source, 'reward.json');
  });

  it('invalid JSON is a problem with reward null', () => {
    const outcome = decideReward(outputs({ rewardJson: '{"reward": 1' }));
    assert.equal(outcome.reward, null);
    assert.deepEqual(outcome.rewards, {});
    assert.match(outcome.problem ?? '', /reward\.json.*not valid JSON/);
  });

  it('an object without a numeric reward is a problem, but its other numeric keys are kept', () => {
    const outcome = decideReward(outputs({ rewardJson: JSON.stringify({ reward: '1', accuracy: 0.3 }) }));
    assert.equal(outcome.reward, null);
    assert.deepEqual(outcome.rewards, { accuracy: 0.3 });
    assert.match(outcome.problem ?? '', /reward/);
    assert.equal(outcome.source, 'reward.json');
  });

  for (const text of ['"0.5"', 'null', '[1]', 'true', '{}']) {
    it(`${text} holds no numeric reward: a problem`, () => {
      const outcome = decideReward(outputs({ rewardJson: text }));
      assert.equal(outcome.reward, null);
      assert.notEqual(outcome.problem, null);
    });
  }
});

describe('test_script', () => {
  it('exit 0 gives 1', () => {
    assert.deepEqual(decideReward(outputs({ testScript: command(0) })), { reward: 1, rewards: {}, problem: null, source: 'test_script' });
  });

  for (const exit of [1, 2, 127, null]) {
    it(`exit ${String(exit)} gives 0${exit === null ? ' (killed)' : ''}`, () => {
      const outcome = decideReward(outputs({ testScript: command(exit) }));
      assert.equal(outcome.reward, 0);
      assert.equal(outcome.source, 'test_script');
    });
  }
});

describe('verify commands', () => {
  it('the reward is the share that exited 0: 2 of 3 gives 2/3', () => {
    const outcome = decideReward(outputs({ verify: [command(0), command(3), command(0)] }));
    assert.equal(outcome.reward, 2 / 3);
    assert.equal(outcome.source, 'verify');
    assert.equal(outcome.problem, null);
  });

  it('a killed command (exit_code null) counts as failed', () => {
    const outcome = decideReward(outputs({ verify: [command(0), command(null)] }));
    assert.equal(outcome.reward, 1 / 2);
  });

  it('all passing gives 1, none passing gives 0', () => {
    assert.equal(decideReward(outputs({ verify: [command(0), command(0)] })).reward, 1);
    assert.equal(decideReward(outputs({ verify: [command(1), command(null)] })).reward, 0);
  });
});
