import path from 'node:path';
import type { Sandbox } from '../../sandbox/types.js';

/** Provider id under which opencode sees the model (`-m llm/<model>`). Not "opencode…": opencode treats those ids as its own service. */
const PROVIDER_ID = 'llm';
/** What opencode sends as its API key: the proxy replaces it, so the real key never enters the sandbox. */
const PLACEHOLDER_API_KEY = 'opencode-env-proxy';
const CONTEXT_LIMIT = 131_072;

export interface OpencodeRunPlan {
  argv: string[];
  env: Record<string, string>;
  /** Fed on stdin: opencode reads its prompt from there, which avoids argv quoting and length limits. */
  stdin: string;
}

export interface OpencodeSettings {
  model: string;
  maxTokensCap: number;
  /** OpenAI-compatible base URL opencode calls (the proxy, reached through the sandbox's LLM channel). */
  baseUrl: string;
  apiKey?: string;
  disableThinking?: boolean;
  /**
   * Let opencode compact (summarise) and prune (drop old tool outputs from) its history when the context fills up.
   * Off by default: either rewrites what the model saw, which breaks a session's turns into separate training sequences.
   */
  autoCompact?: boolean;
}

/** opencode's configuration for one headless run: one custom provider, every permission granted. */
function opencodeConfig(settings: Omit<OpencodeSettings, 'maxTokensCap'> & { maxTokensCap: number | string }): Record<string, unknown> {
  return {
    autoupdate: false,
    share: 'disabled',
    snapshot: false,
    permission: { '*': 'allow', external_directory: 'allow', doom_loop: 'allow' },
    provider: {
      [PROVIDER_ID]: {
        npm: '@ai-sdk/openai-compatible',
        name: 'opencode-env',
        options: { baseURL: settings.baseUrl, apiKey: settings.apiKey ?? PLACEHOLDER_API_KEY },
        models: {
          [settings.model]: {
            name: settings.model,
            tool_call: true,
            limit: { context: CONTEXT_LIMIT, output: settings.maxTokensCap },
            // opencode copies model options into every request body: the way to turn thinking off without a proxy.
            ...(settings.disableThinking ? { options: { chat_template_kwargs: { enable_thinking: false } } } : {}),
          },
        },
      },
    },
    model: `${PROVIDER_ID}/${settings.model}`,
    small_model: `${PROVIDER_ID}/${settings.model}`,
  };
}

/**
 * Files under the sandbox's home that a warm opencode reads its model from. opencode substitutes `{file:<path>}` in
 * OPENCODE_CONFIG_CONTENT each time it loads a project instance, and the rollout's workdir gets its instance only with
 * the prompt: so one opencode, started before the model is known, ends up with exactly the configuration a cold run
 * is given inline.
 */
const MODEL_BINDING_FILES = { model: '.config/opencode-env/model', maxTokensCap: '.config/opencode-env/max-tokens-cap' } as const;

/** The settings a warm opencode is started with: everything but the model and its output cap, bound later. */
export type UnboundOpencodeSettings = Omit<OpencodeSettings, 'model' | 'maxTokensCap'>;

/** OPENCODE_CONFIG_CONTENT for `settings`, or, for an unbound opencode, with the model and cap read from the binding files. */
function configContent(settings: OpencodeSettings | UnboundOpencodeSettings, home: string): string {
  if ('model' in settings) return JSON.stringify(opencodeConfig(settings));
  const modelMarker = '\u0000model\u0000';
  const capMarker = '\u0000cap\u0000';
  const reference = (file: string) => {
    const where = path.posix.join(home, file);
    if (/[{}"\\]/.test(where)) throw new Error(`a home directory opencode cannot read a {file:} reference from: ${where}`);
    return `{file:${where}}`;
  };
  return JSON.stringify(opencodeConfig({ ...settings, model: modelMarker, maxTokensCap: capMarker }))
    .replaceAll(JSON.stringify(capMarker), reference(MODEL_BINDING_FILES.maxTokensCap))
    .replaceAll(JSON.stringify(modelMarker).slice(1, -1), reference(MODEL_BINDING_FILES.model));
}

/**
 * Whether a warm opencode can be bound to this model id: not when the substitution would not give it back as it is
 * (opencode trims what it reads, and a `{` could start another reference). Such a rollout starts cold.
 */
export function isBindableModel(model: string): boolean {
  return model === model.trim() && !/[{}]/.test(model);
}

/** What binds a warm opencode to a model: file path (absolute) -> content, written before its prompt; null if it cannot be. */
export function modelBindingFiles(settings: Pick<OpencodeSettings, 'model' | 'maxTokensCap'>, home: string): Record<string, string> | null {
  if (!isBindableModel(settings.model)) return null;
  return {
    [path.posix.join(home, MODEL_BINDING_FILES.model)]: settings.model,
    [path.posix.join(home, MODEL_BINDING_FILES.maxTokensCap)]: String(settings.maxTokensCap),
  };
}

/**
 * opencode's model catalogue (models.dev's, thousands of models), replaced by an empty one: opencode rebuilds it for
 * every project instance, about 0.5 s of CPU each time, and none of it applies to the one custom provider it is given.
 * The request bodies are the same either way (checked for gpt-, claude, gemini, qwen and other model ids).
 */
const EMPTY_MODEL_CATALOGUE = '.config/opencode-env/models.json';

/**
 * Environment for a headless, offline opencode with all its state under `home`; for unbound settings, the model comes
 * from `modelBindingFiles`, written before the prompt.
 */
export function opencodeEnv(settings: OpencodeSettings | UnboundOpencodeSettings, home: string): Record<string, string> {
  return {
    OPENCODE_CONFIG_CONTENT: configContent(settings, home),
    OPENCODE_MODELS_PATH: path.posix.join(home, EMPTY_MODEL_CATALOGUE),
    OPENCODE_DISABLE_MODELS_FETCH: '1',
    OPENCODE_DISABLE_AUTOUPDATE: '1',
    OPENCODE_DISABLE_SHARE: '1',
    OPENCODE_DISABLE_LSP_DOWNLOAD: '1',
    OPENCODE_DISABLE_CLAUDE_CODE: '1',
    ...(settings.autoCompact ? {} : { OPENCODE_DISABLE_AUTOCOMPACT: '1', OPENCODE_DISABLE_PRUNE: '1' }),
    XDG_CONFIG_HOME: path.posix.join(home, '.config'),
    XDG_DATA_HOME: path.posix.join(home, '.local/share'),
    XDG_CACHE_HOME: path.posix.join(home, '.cache'),
    XDG_STATE_HOME: path.posix.join(home, '.local/state'),
  };
}

export function opencodeArgs(model: string): string[] {
  return ['run', '--format', 'json', '-m', `${PROVIDER_ID}/${model}`];
}

/**
 * Files opencode finds under its home, path under home -> content: the empty model catalogue, and what stops its
 * background `npm install` of its plugin package (a network call).
 */
export const OPENCODE_HOME_FILES: Record<string, string> = {
  [EMPTY_MODEL_CATALOGUE]: '{}',
  '.config/opencode/node_modules/.keep': '',
  '.config/opencode/package-lock.json': JSON.stringify({
    lockfileVersion: 3,
    packages: { '': { dependencies: { '@opencode-ai/plugin': '*' } } },
  }),
};

/** Writes opencode's home files into the sandbox, plus `extra` (absolute path -> content): one archive on a remote backend. */
export async function prepareOpencodeHome(sandbox: Sandbox, extra: Record<string, string> = {}): Promise<void> {
  const files = Object.entries(OPENCODE_HOME_FILES).map(([file, content]) => ({ path: path.posix.join(sandbox.homeDir, file), content }));
  await sandbox.writeFiles([...files, ...Object.entries(extra).map(([file, content]) => ({ path: file, content }))]);
}

/**
 * Prepares opencode to run headless and offline in `sandbox`: a private config and state under the
 * sandbox's home, every permission granted, no model-catalogue fetch, no plugin install, and the model
 * reached only through `baseUrl`.
 */
export async function planOpencodeRun(sandbox: Sandbox, settings: OpencodeSettings & { instruction: string }): Promise<OpencodeRunPlan> {
  await prepareOpencodeHome(sandbox);
  const opencode = await sandbox.binaryPath('opencode');
  return { argv: [opencode, ...opencodeArgs(settings.model)], stdin: settings.instruction, env: opencodeEnv(settings, sandbox.homeDir) };
}

const MAX_EVENTS = 2000;
const MAX_EVENT_CHARS = 64 * 1024;

/** Collects opencode's `--format json` events from its stdout as it arrives; other lines are kept as log. */
export class OpencodeEventCollector {
  readonly events: Array<Record<string, unknown>> = [];
  droppedEvents = 0;
  private buffer = '';
  private readonly otherLines: string[] = [];

  push(chunk: Buffer): void {
    this.buffer += chunk.toString('utf8');
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      this.line(this.buffer.slice(0, newline));
      this.buffer = this.buffer.slice(newline + 1);
    }
  }

  finish(): void {
    if (this.buffer.trim()) this.line(this.buffer);
    this.buffer = '';
  }

  private line(line: string): void {
    const trimmed = line.trim();
    if (!trimmed) return;
    let event: unknown;
    try {
      event = JSON.parse(trimmed);
    } catch {
      this.otherLines.push(trimmed);
      return;
    }
    if (!event || typeof event !== 'object') return;
    if (this.events.length >= MAX_EVENTS) {
      this.droppedEvents += 1;
      return;
    }
    this.events.push(
      trimmed.length > MAX_EVENT_CHARS
        ? { type: (event as { type?: unknown }).type, truncated: true, chars: trimmed.length }
        : (event as Record<string, unknown>),
    );
  }

  /** Error messages opencode reported (`error` events), for the rollout's log and error text. */
  errors(): string[] {
    return this.events
      .filter((e) => e.type === 'error')
      .map((e) => {
        const error = e.error as { name?: string; data?: { message?: string } } | undefined;
        return `${error?.name ?? 'Error'}: ${error?.data?.message ?? JSON.stringify(error)}`;
      });
  }

  nonJsonOutput(): string {
    return this.otherLines.join('\n');
  }
}
