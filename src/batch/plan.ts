/**
 * What a batch runs: every (task, sample) pair, minus those already recorded. Pure, so resume is
 * easy to reason about: a pair is done exactly when results.jsonl has a line for it.
 */

export interface BatchPair {
  taskId: string;
  /** 0-based sample index within the task. */
  sample: number;
  /** The GRPO group: the K samples of one task share it. */
  groupId: string;
}

/** The identity of a pair in results.jsonl. */
export function pairKey(taskId: string, sample: number): string {
  return JSON.stringify([taskId, sample]);
}

/** The K samples of a task are its group. */
function groupIdFor(taskId: string): string {
  return taskId;
}

/**
 * Every pair in run order: task by task, so each group completes as early as it can and a trainer
 * reading results.jsonl as it grows gets whole groups.
 */
export function planPairs(taskIds: readonly string[], samples: number): BatchPair[] {
  return taskIds.flatMap((taskId) => Array.from({ length: samples }, (_, sample) => ({ taskId, sample, groupId: groupIdFor(taskId) })));
}

/** The pairs still to run, given the keys (see pairKey) of those recorded. */
export function pendingPairs(pairs: readonly BatchPair[], done: ReadonlySet<string>): BatchPair[] {
  return pairs.filter((pair) => !done.has(pairKey(pair.taskId, pair.sample)));
}
