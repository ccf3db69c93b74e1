import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { InvalidInputError } from '../../errors.js';
import { planDockerfile, type DockerfilePlan } from './dockerfile.js';

/**
 * One Harbor (terminal-bench) task directory: task.toml, instruction.md, tests/ (test.sh, the verifier), environment/
 * (a Dockerfile), and optionally solution/solve.sh (the oracle). Loaded into plain data; how it runs is dataset.ts's.
 */

export interface HarborEnvironment {
  /** environment/ (the Dockerfile's build context), or null when the task has none. */
  dir: string | null;
  /** `[environment].docker_image`: a prebuilt image the task runs in. */
  dockerImage: string | null;
  /** environment/Dockerfile, read (dockerfile.ts); null when there is none. */
  dockerfile: DockerfilePlan | null;
  /** Files the Dockerfile copies into its WORKDIR: path relative to the workdir -> text. */
  workdirFiles: Record<string, string>;
  /** What the task needs beyond this host's tools (dockerfile.ts's rule), as a phrase; null when nothing. */
  needs: string | null;
}

export interface HarborTask {
  /** The directory's name. */
  id: string;
  dir: string;
  instruction: string;
  /** Seconds, from task.toml; null where it says nothing (run_rollout's defaults apply). */
  timeouts: { agentS: number | null; verifierS: number | null };
  verifierEnv: Record<string, string>;
  /** tests/, recursively: path relative to tests/ -> text. Always holds test.sh. */
  tests: Record<string, string>;
  environment: HarborEnvironment;
  /** solution/solve.sh, or null when the task ships no solution. */
  solveScript: string | null;
  metadata: Record<string, unknown>;
}

const seconds = z.number().positive().max(86_400);
const taskTomlSchema = z.looseObject({
  version: z.string().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  verifier: z.looseObject({ timeout_sec: seconds.optional(), env: z.record(z.string(), z.string()).optional() }).optional(),
  agent: z.looseObject({ timeout_sec: seconds.optional() }).optional(),
  environment: z.looseObject({ docker_image: z.string().min(1).optional() }).optional(),
});

const MAX_FILE_BYTES = 1024 * 1024;

function taskError(file: string, problem: string): InvalidInputError {
  return new InvalidInputError(`Harbor task ${file}: ${problem}`);
}

async function readText(file: string, label: string): Promise<string> {
  const data = await readFile(file).catch((error: NodeJS.ErrnoException) => {
    throw taskError(label, error.code === 'ENOENT' ? 'missing' : `cannot be read: ${error.message}`);
  });
  if (data.length > MAX_FILE_BYTES) throw taskError(label, `larger than ${MAX_FILE_BYTES} bytes`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw taskError(label, 'is not UTF-8 text (binary files are not supported)');
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Every regular file under `dir`, relative to it with `/` separators; symlinks and the like are refused. */
async function listFiles(dir: string, label: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string, rel: string) => {
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path.join(current, entry.name), childRel);
      else if (entry.isFile()) found.push(childRel);
      else throw taskError(`${label}/${childRel}`, 'is not a regular file or directory');
    }
  };
  await walk(dir, '');
  return found.sort();
}

async function readTree(dir: string, label: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const rel of await listFiles(dir, label)) files[rel] = await readText(path.join(dir, rel), `${label}/${rel}`);
  return files;
}

/** task.toml, parsed and checked; errors name the file and the field. */
function parseTaskToml(text: string, label: string): z.infer<typeof taskTomlSchema> {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (error) {
    throw taskError(label, `is not valid TOML: ${(error as Error).message.split('\n')[0]}`);
  }
  const parsed = taskTomlSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.map(String).join('.');
    throw taskError(label, `${field || 'the file'}: ${issue.message}`);
  }
  return parsed.data;
}

/** The files a Dockerfile's COPY/ADD lines put in its WORKDIR, from environment/. */
async function copiedFiles(plan: DockerfilePlan, environmentDir: string, label: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const copy of plan.copies) {
    for (const source of copy.sources) {
      const from = path.join(environmentDir, source);
      const where = `${label}/${source} (environment/Dockerfile line ${copy.line})`;
      const info = await stat(from).catch(() => null);
      if (!info) throw taskError(where, 'missing');
      const join = (...parts: string[]) => parts.filter(Boolean).join('/');
      if (info.isDirectory()) {
        // Docker copies a directory's contents, not the directory.
        for (const [rel, content] of Object.entries(await readTree(from, `${label}/${source}`)))
          files[join(copy.destination, rel)] = content;
      } else {
        const target = copy.intoDirectory || copy.destination === '' ? join(copy.destination, path.basename(source)) : copy.destination;
        files[target] = await readText(from, where);
      }
    }
  }
  return files;
}

async function loadEnvironment(dir: string, dockerImage: string | null): Promise<HarborEnvironment> {
  const environmentDir = path.join(dir, 'environment');
  const dockerfilePath = path.join(environmentDir, 'Dockerfile');
  const dockerfile = (await exists(dockerfilePath)) ? planDockerfile(await readText(dockerfilePath, 'environment/Dockerfile')) : null;
  const needs = dockerImage
    ? `the image ${dockerImage} ([environment].docker_image in task.toml)`
    : dockerfile
      ? (dockerfile.unmet ?? (dockerfile.baseImage === null ? 'an image (environment/Dockerfile has no FROM)' : null))
      : null;
  const workdirFiles = dockerfile && needs === null ? await copiedFiles(dockerfile, environmentDir, 'environment') : {};
  return { dir: (await exists(environmentDir)) ? environmentDir : null, dockerImage, dockerfile, workdirFiles, needs };
}

/** Loads the Harbor task in `dir`; throws InvalidInputError naming the file (and field) that is wrong. */
export async function loadHarborTask(dir: string): Promise<HarborTask> {
  const id = path.basename(path.resolve(dir));
  const at = (file: string) => `${id}/${file}`;
  const toml = parseTaskToml(await readText(path.join(dir, 'task.toml'), at('task.toml')), at('task.toml'));
  const instruction = await readText(path.join(dir, 'instruction.md'), at('instruction.md'));
  if (instruction.trim() === '') throw taskError(at('instruction.md'), 'is empty');
  const testsDir = path.join(dir, 'tests');
  if (!(await exists(path.join(testsDir, 'test.sh')))) throw taskError(at('tests/test.sh'), 'missing (the verifier Harbor runs)');
  const tests = await readTree(testsDir, at('tests'));
  const solvePath = path.join(dir, 'solution', 'solve.sh');
  return {
    id,
    dir,
    instruction,
    timeouts: { agentS: toml.agent?.timeout_sec ?? null, verifierS: toml.verifier?.timeout_sec ?? null },
    verifierEnv: toml.verifier?.env ?? {},
    tests,
    environment: await loadEnvironment(dir, toml.environment?.docker_image ?? null),
    solveScript: (await exists(solvePath)) ? await readText(solvePath, at('solution/solve.sh')) : null,
    metadata: toml.metadata ?? {},
  };
}
