import { loadConfig } from '../config.js';
import { ConfigError, InvalidInputError } from '../errors.js';
import { buildTemplate, templateDockerfile } from '../sandbox/e2b/template.js';

export interface TemplateBuildOptions {
  name?: string;
  cpu?: string;
  memoryMb?: string;
}

function positiveInteger(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0)
    throw new InvalidInputError(`${flag} must be a positive whole number, not ${JSON.stringify(value)}`);
  return parsed;
}

/** `opencode-env template show`: the template as a Dockerfile, for review; needs no key and no network. */
export function runTemplateShow(): number {
  process.stdout.write(templateDockerfile());
  return 0;
}

/**
 * `opencode-env template build`: builds the template on E2B. Build logs go to stderr; stdout gets one line naming
 * the template, so that a script can use it. By default it builds the template sandboxes start from
 * (OPENCODE_ENV_E2B_TEMPLATE, else `opencode-env`).
 */
export async function runTemplateBuild(options: TemplateBuildOptions): Promise<number> {
  let cpuCount: number | undefined;
  let memoryMB: number | undefined;
  try {
    cpuCount = positiveInteger('--cpu', options.cpu);
    memoryMB = positiveInteger('--memory-mb', options.memoryMb);
  } catch (error) {
    process.stderr.write(`opencode-env: ${(error as Error).message}\n`);
    return 2;
  }
  const config = loadConfig();
  const e2b = config.sandbox.e2b;
  if (!e2b)
    throw new ConfigError('template build needs E2B_API_KEY (your E2B API key, from https://e2b.dev/dashboard?tab=keys); it is not set');
  const name = options.name ?? e2b.template;
  process.stderr.write(`building the E2B template ${JSON.stringify(name)} (this takes a few minutes)\n`);
  const built = await buildTemplate({ name, apiKey: e2b.apiKey, cpuCount, memoryMB, onLog: (line) => process.stderr.write(`${line}\n`) });
  process.stderr.write(`built: template ${built.templateId}, build ${built.buildId}\n`);
  process.stdout.write(`${built.name}\n`);
  return 0;
}
