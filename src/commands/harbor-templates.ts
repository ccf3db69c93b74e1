import type { Config } from '../config.js';
import type { HarborEnvironment } from '../core/harbor/task.js';
import { HarborTemplates, wantsOwnTemplate } from '../sandbox/e2b/harbor-template.js';

/** Templates built at once: each build runs on E2B for minutes, mostly waiting. */
const PARALLEL_BUILDS = 4;

/** run_rollout arguments that put a task in its own template: the template, and the image's WORKDIR if it set one. */
type TemplateArguments = { template: string; workdir?: string };

export interface HarborTaskEnvironment {
  taskId: string;
  environment: HarborEnvironment;
}

/**
 * On E2B, each Harbor task that brings an environment (environment/Dockerfile or docker_image) runs in a template
 * built from it, once per distinct environment (harbor-template.ts); on the local backend nothing changes (the rollout
 * core refuses what the host cannot provide). Returns the arguments per task id; build logs go to stderr.
 */
export async function prepareHarborTemplates(config: Config, tasks: HarborTaskEnvironment[]): Promise<Map<string, TemplateArguments>> {
  const prepared = new Map<string, TemplateArguments>();
  const e2b = config.sandbox.e2b;
  const wanting = tasks.filter((task) => wantsOwnTemplate(task.environment));
  if (config.sandbox.backend !== 'e2b' || !e2b || wanting.length === 0) return prepared;
  const templates = new HarborTemplates({ apiKey: e2b.apiKey, onLog: (line) => process.stderr.write(`${line}\n`) });
  let next = 0;
  const worker = async () => {
    while (next < wanting.length) {
      const { taskId, environment } = wanting[next++]!;
      const { name } = await templates.ensure(environment, taskId);
      const workdir = environment.dockerfile?.workdir ?? null;
      prepared.set(taskId, { template: name, ...(workdir !== null ? { workdir } : {}) });
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_BUILDS, wanting.length) }, worker));
  return prepared;
}
