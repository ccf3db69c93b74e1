/**
 * E2B templates for Harbor tasks. A task's environment (environment/Dockerfile with its build context, or task.toml's
 * docker_image) plus the overlay opencode-env needs in any image (resources/e2b/harbor-overlay.json) becomes one
 * template, named by a hash of everything that goes into it: identical environments share a template, an edited one
 * gets a new one, and a template already on E2B (from an earlier run, or another machine) is used as it is.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Template, type TemplateBuilder } from 'e2b';
import {
  applyTemplateSteps,
  buildTemplate,
  loadTemplateOverlay,
  TEMPLATE_OVERLAY_PATH,
  TemplateBuildError,
  templateBuildFailure,
} from './template.js';
import { shellQuote } from './shell.js';

/** Bumped when what this module adds to a template changes in a way the overlay file does not show. */
const RECIPE_VERSION = '1';
const NAME_PREFIX = 'opencode-env-harbor-';

/** What a Harbor template is made of: the task's environment as it stands on disk (a Harbor task's `environment`). */
export interface HarborTemplateSource {
  /** environment/, the Dockerfile's build context; null when the task has none. */
  dir: string | null;
  /** task.toml's `[environment].docker_image`, which wins over a Dockerfile. */
  dockerImage: string | null;
  /** environment/Dockerfile as read, null when there is none: its last WORKDIR becomes the agent's workdir. */
  dockerfile: { workdir: string | null } | null;
}

/** Whether a task's environment asks for a template of its own (a Dockerfile or an image), rather than the default one. */
export function wantsOwnTemplate(environment: HarborTemplateSource): boolean {
  return environment.dockerImage !== null || environment.dockerfile !== null;
}

/** Every file under `dir`, relative to it with `/` separators, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() || entry.isSymbolicLink())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
    .sort();
}

/** `opencode-env-harbor-<16 hex>`: a hash of the environment directory's files, the image, the overlay and this recipe. */
export async function harborTemplateName(environment: HarborTemplateSource): Promise<string> {
  const hash = createHash('sha256');
  const field = (value: string | Buffer) => {
    hash.update(String(Buffer.byteLength(value)));
    hash.update('\0');
    hash.update(value);
  };
  field(RECIPE_VERSION);
  field(await readFile(TEMPLATE_OVERLAY_PATH));
  field(environment.dockerImage ?? '');
  if (environment.dir !== null && environment.dockerImage === null) {
    for (const file of await filesUnder(environment.dir)) {
      field(file);
      field(await readFile(path.join(environment.dir, file)));
    }
  }
  return `${NAME_PREFIX}${hash.digest('hex').slice(0, 16)}`;
}

/**
 * The task's image, then the overlay as root, then its WORKDIR made the agent's: the agent runs as `user` where the
 * task's own files are, as Harbor's agent does in the container's WORKDIR.
 */
export function harborTemplateBuilder(environment: HarborTemplateSource): TemplateBuilder {
  const base = Template(environment.dir ? { fileContextPath: environment.dir } : undefined);
  let template: TemplateBuilder;
  if (environment.dockerImage !== null) template = base.fromImage(environment.dockerImage);
  else if (environment.dir !== null && environment.dockerfile !== null)
    template = base.fromDockerfile(path.join(environment.dir, 'Dockerfile'));
  else throw new Error('a Harbor template needs environment/Dockerfile or [environment].docker_image');
  template = applyTemplateSteps(template, loadTemplateOverlay());
  const workdir = environment.dockerfile?.workdir ?? null;
  if (workdir !== null)
    template = template.runCmd(`mkdir -p ${shellQuote(workdir)} && chown -R user: ${shellQuote(workdir)}`, { user: 'root' });
  return template.setUser('user').setWorkdir(workdir ?? '/home/user');
}

export interface HarborTemplatesOptions {
  apiKey: string;
  /** One line per event (reused, building, built) and per build log line. */
  onLog?: (line: string) => void;
}

/** Ensures each distinct environment's template once per process: reused when E2B has it, otherwise built. */
export class HarborTemplates {
  private readonly ensured = new Map<string, Promise<{ name: string; built: boolean }>>();

  constructor(private readonly options: HarborTemplatesOptions) {}

  async ensure(environment: HarborTemplateSource, taskId: string): Promise<{ name: string; built: boolean }> {
    const name = await harborTemplateName(environment);
    let pending = this.ensured.get(name);
    if (!pending) {
      pending = this.buildUnlessPresent(name, environment, taskId);
      this.ensured.set(name, pending);
      // A failed build is tried again by the next task that asks.
      pending.catch(() => this.ensured.delete(name));
    }
    return pending;
  }

  private async buildUnlessPresent(name: string, environment: HarborTemplateSource, taskId: string) {
    const log = this.options.onLog ?? (() => {});
    const present = await Template.exists(name, { apiKey: this.options.apiKey }).catch((error: unknown) => {
      throw new TemplateBuildError(templateBuildFailure(error, name), { cause: error });
    });
    if (present) {
      log(`E2B template ${name} for task ${taskId}: already built, reused`);
      return { name, built: false };
    }
    log(`E2B template ${name} for task ${taskId}: building from its environment (this takes a few minutes)`);
    await buildTemplate({
      name,
      apiKey: this.options.apiKey,
      template: harborTemplateBuilder(environment),
      definedIn: `task ${taskId}'s environment/ (or resources/e2b/harbor-overlay.json)`,
      onLog: (line) => log(`  ${line}`),
    });
    log(`E2B template ${name} for task ${taskId}: built`);
    return { name, built: true };
  }
}
