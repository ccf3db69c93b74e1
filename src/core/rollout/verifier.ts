import path from 'node:path';
import { bash, type Sandbox } from '../../sandbox/types.js';
import type { CommandRecord } from './schema.js';

const OUTPUT_LIMIT = 64 * 1024;

export async function runShellCommand(
  sandbox: Sandbox,
  cmd: string,
  options: { timeoutS: number; signal?: AbortSignal; env?: Record<string, string>; as?: 'agent' | 'verifier'; stdin?: string },
): Promise<CommandRecord> {
  const result = await sandbox.run(bash(cmd), {
    timeoutMs: options.timeoutS * 1000,
    maxOutputBytes: OUTPUT_LIMIT,
    ...(options.as ? { as: options.as } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.env ? { env: options.env } : {}),
    ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
  });
  return {
    cmd,
    exit_code: result.timedOut || result.aborted ? null : result.exitCode,
    stdout: result.stdout,
    stderr: result.stderr,
    duration_s: Math.round(result.durationMs) / 1000,
    timed_out: result.timedOut,
  };
}

export interface RewardOutcome {
  reward: number | null;
  rewards: Record<string, number>;
  /** Set when the verifier's output could not be turned into a reward. */
  problem: string | null;
  source: 'reward.txt' | 'reward.json' | 'test_script' | 'verify' | 'none';
}

/** A reward file's text, null when there is none; a file that cannot be read (a symlink, a directory) is a problem. */
async function readOptional(sandbox: Sandbox, file: string): Promise<{ text: string | null } | { problem: string }> {
  try {
    return { text: (await sandbox.readFile(file)).toString('utf8') };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { text: null };
    return { problem: `${path.posix.basename(file)} cannot be read: ${(error as Error).message}` };
  }
}

/** What the verifier left behind: its reward files (null when absent) and its commands' records. */
export interface VerifierOutputs {
  rewardTxt: string | null;
  rewardJson: string | null;
  testScript: CommandRecord | null;
  verify: CommandRecord[];
}

/**
 * The reward, in order of precedence: a number in reward.txt; reward.json's `reward` (other numeric keys
 * become `rewards`); the test script's exit status; the share of verify commands that passed; else null.
 */
export function decideReward({ rewardTxt, rewardJson, testScript, verify }: VerifierOutputs): RewardOutcome {
  if (rewardTxt !== null) {
    const value = Number(rewardTxt.trim());
    if (rewardTxt.trim() === '' || !Number.isFinite(value)) {
      return {
        reward: null,
        rewards: {},
        problem: `reward.txt does not hold a number: ${JSON.stringify(rewardTxt.slice(0, 100))}`,
        source: 'reward.txt',
      };
    }
    return { reward: value, rewards: {}, problem: null, source: 'reward.txt' };
  }
  if (rewardJson !== null) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(rewardJson);
    } catch (error) {
      return { reward: null, rewards: {}, problem: `reward.json is not valid JSON: ${(error as Error).message}`, source: 'reward.json' };
    }
    if (typeof parsed === 'number' && Number.isFinite(parsed)) return { reward: parsed, rewards: {}, problem: null, source: 'reward.json' };
    const record = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
    const rewards = Object.fromEntries(
      Object.entries(record).filter(([key, value]) => key !== 'reward' && typeof value === 'number' && Number.isFinite(value)),
    ) as Record<string, number>;
    if (typeof record.reward !== 'number' || !Number.isFinite(record.reward)) {
      return { reward: null, rewards, problem: 'reward.json has no numeric "reward"', source: 'reward.json' };
    }
    return { reward: record.reward, rewards, problem: null, source: 'reward.json' };
  }
  if (testScript) {
    return { reward: testScript.exit_code === 0 ? 1 : 0, rewards: {}, problem: null, source: 'test_script' };
  }
  if (verify.length > 0) {
    const passed = verify.filter((r) => r.exit_code === 0).length;
    return { reward: passed / verify.length, rewards: {}, problem: null, source: 'verify' };
  }
  return { reward: null, rewards: {}, problem: null, source: 'none' };
}

/** Reads the verifier's reward files from the sandbox and decides the reward. */
export async function computeReward(
  sandbox: Sandbox,
  commands: { testScript: CommandRecord | null; verify: CommandRecord[] },
): Promise<RewardOutcome> {
  const [rewardTxt, rewardJson] = await Promise.all([
    readOptional(sandbox, path.posix.join(sandbox.rewardDir, 'reward.txt')),
    readOptional(sandbox, path.posix.join(sandbox.rewardDir, 'reward.json')),
  ]);
  for (const read of [rewardTxt, rewardJson]) {
    if ('problem' in read) return { reward: null, rewards: {}, problem: read.problem, source: 'none' };
  }
  return decideReward({
    rewardTxt: (rewardTxt as { text: string | null }).text,
    rewardJson: (rewardJson as { text: string | null }).text,
    ...commands,
  });
}
