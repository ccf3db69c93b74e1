import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { loadHarborTasks } from '../core/harbor/dataset.js';
import type { HarborEnvironment } from '../core/harbor/task.js';
import { rolloutRequestSchema, type RolloutSpec } from '../core/rollout/schema.js';
import { InvalidInputError } from '../errors.js';

/** One task of a batch: its id (the key results and resume use), the rollout it runs, and where it came from (for messages). */
interface BatchTask {
  taskId: string;
  spec: RolloutSpec;
  source: string;
  /** A Harbor task's environment (what an E2B template is built from). */
  harborEnvironment?: HarborEnvironment;
}

type DatasetKind = 'jsonl' | 'json-dir' | 'harbor';

export interface Dataset {
  kind: DatasetKind;
  tasks: BatchTask[];
}

/** A task before validation: its run_rollout arguments and where they were read. */
interface RawTask {
  source: string;
  args: unknown;
  /** The id to use when the arguments carry none (a JSON file's name); JSONL lines must carry their own. */
  fallbackId?: string;
  harborEnvironment?: HarborEnvironment;
}

/**
 * Reads and validates a whole dataset before anything runs: a batch that would fail on task 900 after
 * hours should fail now. Every problem is reported at once, each naming its line or file and field.
 * `overrides` (the command line's endpoint, model, ...) are applied on top of every task.
 */
export async function loadDataset(datasetPath: string, overrides: Record<string, unknown> = {}): Promise<Dataset> {
  const info = await stat(datasetPath).catch(() => null);
  if (!info) throw new InvalidInputError(`dataset ${datasetPath}: no such file or directory`);
  let kind: DatasetKind;
  let raw: RawTask[];
  if (info.isFile()) {
    kind = 'jsonl';
    raw = parseJsonl(datasetPath, await readFile(datasetPath, 'utf8'));
  } else if (await isHarborDir(datasetPath)) {
    kind = 'harbor';
    raw = await readHarborTasks(datasetPath);
  } else {
    kind = 'json-dir';
    raw = await readJsonDir(datasetPath);
  }
  return { kind, tasks: validateTasks(raw, overrides) };
}

function parseJsonl(file: string, text: string): RawTask[] {
  const tasks: RawTask[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((line, index) => {
    if (!line.trim()) return;
    const source = `${file}:${index + 1}`;
    try {
      tasks.push({ source, args: JSON.parse(line) });
    } catch (error) {
      problems.push(`${source}: not JSON (${(error as Error).message})`);
    }
  });
  if (problems.length) throw datasetError(problems);
  return tasks;
}

async function readJsonDir(dir: string): Promise<RawTask[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.json')).sort();
  if (names.length === 0) {
    throw new InvalidInputError(
      `dataset ${dir}: a directory needs task JSON files (*.json) or Harbor tasks (subdirectories with task.toml)`,
    );
  }
  const problems: string[] = [];
  const tasks: RawTask[] = [];
  for (const name of names) {
    const source = path.join(dir, name);
    try {
      tasks.push({ source, args: JSON.parse(await readFile(source, 'utf8')), fallbackId: name.slice(0, -'.json'.length) });
    } catch (error) {
      problems.push(`${source}: not JSON (${(error as Error).message})`);
    }
  }
  if (problems.length) throw datasetError(problems);
  return tasks;
}

/** A Harbor dataset is a directory of task directories, each with a task.toml (or one such task directory). */
async function isHarborDir(dir: string): Promise<boolean> {
  const hasTaskToml = async (candidate: string) => (await stat(path.join(candidate, 'task.toml')).catch(() => null))?.isFile() ?? false;
  if (await hasTaskToml(dir)) return true;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && (await hasTaskToml(path.join(dir, entry.name)))) return true;
  }
  return false;
}

async function readHarborTasks(dir: string): Promise<RawTask[]> {
  return (await loadHarborTasks(dir)).map(({ taskId, args, task }) => ({
    source: path.join(dir, taskId),
    args,
    fallbackId: taskId,
    harborEnvironment: task.environment,
  }));
}

/** Checks every task against run_rollout's schema (with the overrides applied) and that task ids are unique. */
function validateTasks(raw: RawTask[], overrides: Record<string, unknown>): BatchTask[] {
  const problems: string[] = [];
  const tasks: BatchTask[] = [];
  const seen = new Map<string, string>();
  for (const { source, args, fallbackId, harborEnvironment } of raw) {
    if (!args || typeof args !== 'object' || Array.isArray(args)) {
      problems.push(`${source}: a task must be a JSON object of run_rollout arguments`);
      continue;
    }
    const merged: Record<string, unknown> = { ...(args as Record<string, unknown>), ...overrides };
    // The command line's base URL replaces the task's endpoint choice, as `rollout --base-url` does.
    if (overrides.base_url !== undefined) delete merged.vllm_url;
    if (overrides.base_url !== undefined && overrides.endpoint === undefined) delete merged.endpoint;
    if (merged.task_id === undefined && fallbackId !== undefined) merged.task_id = fallbackId;
    if (typeof merged.task_id !== 'string' || merged.task_id === '') {
      problems.push(`${source}: task_id: required (a non-empty string naming the task in results and for --resume)`);
      continue;
    }
    const parsed = rolloutRequestSchema.safeParse(merged);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) problems.push(`${source}: ${issue.path.join('.') || '(task)'}: ${issue.message}`);
      continue;
    }
    const taskId = merged.task_id;
    const earlier = seen.get(taskId);
    if (earlier) {
      problems.push(`${source}: task_id: "${taskId}" is also the id of ${earlier}; ids must be unique`);
      continue;
    }
    seen.set(taskId, source);
    tasks.push({ taskId, spec: parsed.data, source, ...(harborEnvironment ? { harborEnvironment } : {}) });
  }
  if (problems.length) throw datasetError(problems);
  if (tasks.length === 0) throw new InvalidInputError('the dataset has no tasks');
  return tasks;
}

function datasetError(problems: string[]): InvalidInputError {
  const shown = problems.slice(0, 20);
  const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : '';
  return new InvalidInputError(
    `invalid dataset (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  ${shown.join('\n  ')}${more}`,
  );
}
