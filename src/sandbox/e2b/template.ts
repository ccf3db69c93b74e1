/**
 * The E2B template sandboxes start from. Its definition is data (resources/e2b/template.json), so that reviewing or
 * changing what is in the template means reading one small file; this module turns it into the SDK's `Template()`
 * builder calls, and builds it on E2B with `opencode-env template build`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BuildError, FileUploadError, Template, type BuildInfo, type LogEntry, type TemplateBuilder } from 'e2b';
import { z } from 'zod';
import { OpencodeEnvError } from '../../errors.js';
import { resourcesDir } from '../../paths.js';
import { classifyE2bError, type E2bFailureKind } from './e2b-errors.js';

const TEMPLATE_DEFINITION_PATH = path.join(resourcesDir, 'e2b', 'template.json');
export const TEMPLATE_OVERLAY_PATH = path.join(resourcesDir, 'e2b', 'harbor-overlay.json');

const packages = z.array(z.string().min(1)).min(1);
const user = z.string().min(1).optional();
/** Strict objects, so that a misspelt key fails instead of being dropped; `$comment` is for the reader. */
const stepOf = <T extends z.ZodRawShape>(shape: T) => z.strictObject({ $comment: z.string().optional(), ...shape });
/** Each step names the builder method it becomes. */
const stepSchema = z.discriminatedUnion('type', [
  stepOf({ type: z.literal('aptInstall'), packages }),
  stepOf({ type: z.literal('npmInstallGlobal'), packages }),
  stepOf({ type: z.literal('runCmd'), command: z.string().min(1), user }),
  stepOf({
    type: z.literal('copy'),
    /** Relative to resources/. */
    src: z.string().min(1),
    dest: z.string().startsWith('/'),
    user,
    mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, 'an octal mode such as "0644"')
      .optional(),
  }),
  stepOf({ type: z.literal('setUser'), user: z.string().min(1) }),
  stepOf({ type: z.literal('setWorkdir'), path: z.string().startsWith('/') }),
]);

const definitionSchema = z.strictObject({
  $comment: z.string().optional(),
  fromImage: z.string().min(1),
  build: z.strictObject({ cpuCount: z.number().int().positive(), memoryMB: z.number().int().positive() }),
  steps: z.array(stepSchema).min(1),
});

export type TemplateDefinition = z.infer<typeof definitionSchema>;

export function loadTemplateDefinition(file: string = TEMPLATE_DEFINITION_PATH): TemplateDefinition {
  const parsed = definitionSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new OpencodeEnvError(`${file} is not a valid template definition: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** The SDK builder for a definition; `copy` sources are read from `contextDir` (resources/) when it is built. */
export function templateFromDefinition(definition: TemplateDefinition, contextDir: string = resourcesDir): TemplateBuilder {
  return applyTemplateSteps(Template({ fileContextPath: contextDir }).fromImage(definition.fromImage), definition.steps);
}

export type TemplateStep = TemplateDefinition['steps'][number];

/** Each step as the builder call of the same name, in order. */
export function applyTemplateSteps(builder: TemplateBuilder, steps: TemplateStep[]): TemplateBuilder {
  let template = builder;
  for (const step of steps) {
    switch (step.type) {
      case 'aptInstall':
        template = template.aptInstall(step.packages);
        break;
      case 'npmInstallGlobal':
        template = template.npmInstall(step.packages, { g: true });
        break;
      case 'runCmd':
        template = template.runCmd(step.command, step.user ? { user: step.user } : undefined);
        break;
      case 'copy':
        template = template.copy(step.src, step.dest, {
          ...(step.user ? { user: step.user } : {}),
          ...(step.mode ? { mode: parseInt(step.mode, 8) } : {}),
        });
        break;
      case 'setUser':
        template = template.setUser(step.user);
        break;
      case 'setWorkdir':
        template = template.setWorkdir(step.path);
        break;
    }
  }
  return template;
}

const overlaySchema = z.strictObject({ $comment: z.string().optional(), steps: z.array(stepSchema).min(1) });

/**
 * Steps that make any Debian, Ubuntu or Alpine image a sandbox opencode-env can drive (node, python3, opencode, the
 * `user` account): appended to the image of a task that brings its own (a Harbor task's environment).
 */
export function loadTemplateOverlay(file: string = TEMPLATE_OVERLAY_PATH): TemplateStep[] {
  const parsed = overlaySchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new OpencodeEnvError(`${file} is not a valid template overlay: ${z.prettifyError(parsed.error)}`);
  return parsed.data.steps;
}

/** The template as a Dockerfile, for review (works offline). */
export function templateDockerfile(definition: TemplateDefinition = loadTemplateDefinition()): string {
  return Template.toDockerfile(templateFromDefinition(definition));
}

export interface BuildTemplateOptions {
  /** `name` or `name:tag`, as sandboxes name it. */
  name: string;
  /** What to build; default: resources/e2b/template.json's template. */
  template?: TemplateBuilder;
  /** Where a failed build's advice sends the reader; default: resources/e2b/template.json. */
  definedIn?: string;
  apiKey: string;
  /** Default: the definition's `build.cpuCount`. */
  cpuCount?: number | undefined;
  /** Default: the definition's `build.memoryMB`. */
  memoryMB?: number | undefined;
  /** Each build log line, as the SDK reports it. */
  onLog?: (line: string) => void;
  /** Only for tests: the SDK reads E2B_API_URL and E2B_DOMAIN itself, and we never override them. */
  apiUrl?: string;
  domain?: string;
}

/** A template build that failed, with one line saying what to do. */
export class TemplateBuildError extends OpencodeEnvError {}

/** Builds the template on E2B and waits until it is ready; an SDK failure becomes a TemplateBuildError. */
export async function buildTemplate(options: BuildTemplateOptions): Promise<BuildInfo> {
  const definition = loadTemplateDefinition();
  try {
    return await Template.build(options.template ?? templateFromDefinition(definition), options.name, {
      apiKey: options.apiKey,
      cpuCount: options.cpuCount ?? definition.build.cpuCount,
      memoryMB: options.memoryMB ?? definition.build.memoryMB,
      ...(options.apiUrl ? { apiUrl: options.apiUrl } : {}),
      ...(options.domain ? { domain: options.domain } : {}),
      onBuildLogs: (entry: LogEntry) => options.onLog?.(entry.toString()),
    });
  } catch (error) {
    throw new TemplateBuildError(templateBuildFailure(error, options.name, options.definedIn), { cause: error });
  }
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** The SDK's build calls throw a BuildError whose message starts with the HTTP status ("403: ...") for what it does not map. */
function buildFailureKind(error: unknown): E2bFailureKind {
  const kind = classifyE2bError(error, 'command');
  if (kind !== 'other' || !(error instanceof BuildError)) return kind;
  return error.message.startsWith('403:') ? 'forbidden' : 'other';
}

function advice(error: unknown, definedIn: string): string {
  // Files go up before the build starts: an upload failure is ours or the network's, not the definition's.
  if (error instanceof FileUploadError) return "could not upload the template's files: check the network and any proxy, and try again";
  switch (buildFailureKind(error)) {
    case 'auth':
      return 'E2B rejected the API key (401): check E2B_API_KEY (a key from https://e2b.dev/dashboard?tab=keys, starting with e2b_)';
    case 'quota':
    case 'rate_limit':
      return "E2B's rate limit or the team's quota refused the build (429): wait a minute and try again, or check the team in the E2B dashboard";
    case 'forbidden':
      return 'E2B refused the build (403): check that the team of E2B_API_KEY is active, has credit, and may build templates';
    case 'busy':
      return 'E2B is temporarily unavailable (503): try again in a minute';
    case 'network':
      return "could not reach E2B's API: check the network, any proxy, and E2B_DOMAIN or E2B_API_URL if set";
    default:
      return error instanceof BuildError
        ? `the build failed on E2B: see the build log above, fix ${definedIn} (or the image it starts from) and build again`
        : 'E2B failed';
  }
}

/** One line naming what failed and what to do, with the SDK's own message for diagnosis. */
export function templateBuildFailure(error: unknown, name: string, definedIn = 'resources/e2b/template.json'): string {
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return `could not build the E2B template ${JSON.stringify(name)}: ${advice(error, definedIn)} [${oneLine(detail)}]`;
}
