import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { HARBOR_TESTS_DIR } from '../../sandbox/types.js';
import { InvalidInputError } from '../../errors.js';
import { loadHarborTask, type HarborTask } from './task.js';

/**
 * A Harbor task as run_rollout arguments: the instruction is the prompt; tests/ goes to /tests for the verifier only
 * (`verifier_files`), which runs `bash /tests/test.sh` (its reward file at /logs/verifier is the sandbox's reward dir);
 * task.toml's timeouts and verifier env apply; files the Dockerfile copies into its WORKDIR are staged in the workdir;
 * solve.sh rides along as `oracle_script` for `agent: 'oracle'`; what the environment needs beyond the host is
 * `environment_needs`, which the local backend refuses up front.
 */
export function harborRolloutArguments(task: HarborTask): Record<string, unknown> {
  const args: Record<string, unknown> = {
    task_id: task.id,
    instruction: task.instruction,
    verifier_files: Object.fromEntries(Object.entries(task.tests).map(([rel, content]) => [`${HARBOR_TESTS_DIR}/${rel}`, content])),
    verify: [`bash ${HARBOR_TESTS_DIR}/test.sh`],
  };
  if (Object.keys(task.environment.workdirFiles).length > 0) args.files = task.environment.workdirFiles;
  if (task.timeouts.agentS !== null) args.agent_timeout_s = task.timeouts.agentS;
  if (task.timeouts.verifierS !== null) args.verify_timeout_s = task.timeouts.verifierS;
  if (Object.keys(task.verifierEnv).length > 0) args.verifier_env = task.verifierEnv;
  if (task.solveScript !== null) args.oracle_script = task.solveScript;
  if (task.environment.needs !== null) args.environment_needs = task.environment.needs;
  return args;
}

/** Every subdirectory of `dir` with a task.toml (or `dir` itself, when it is one task), as run_rollout arguments. */
export async function loadHarborTasks(dir: string): Promise<Array<{ taskId: string; args: Record<string, unknown>; task: HarborTask }>> {
  const isTask = async (candidate: string) => (await stat(path.join(candidate, 'task.toml')).catch(() => null))?.isFile() ?? false;
  let dirs: string[];
  if (await isTask(dir)) {
    dirs = [dir];
  } else {
    const entries = await readdir(dir, { withFileTypes: true }).catch((error: Error) => {
      throw new InvalidInputError(`Harbor dataset ${dir} cannot be read: ${error.message}`);
    });
    const candidates = entries.filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
    dirs = [];
    for (const candidate of candidates.sort()) if (await isTask(candidate)) dirs.push(candidate);
    if (dirs.length === 0) throw new InvalidInputError(`Harbor dataset ${dir}: no task.toml in it or in any of its subdirectories`);
  }
  const tasks = [];
  for (const taskDir of dirs) {
    const task = await loadHarborTask(taskDir);
    tasks.push({ taskId: task.id, args: harborRolloutArguments(task), task });
  }
  return tasks;
}
