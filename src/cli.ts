#!/usr/bin/env node
/**
 * The entry point. It owns the process: it installs the signal and crash handlers, and it loads only
 * what a command uses, because MCP hosts start `stdio` often and wait for it to answer `initialize`.
 */
import { ConfigError } from './errors.js';
import type { Runtime } from './runtime.js';

/** Builds the runtime from `env`, installs the process handlers and hands the runtime to a transport (loaded alongside). */
async function serve(env: NodeJS.ProcessEnv, loadTransport: () => Promise<(runtime: Runtime) => Promise<void>>): Promise<void> {
  const [{ loadConfig }, { createLogger }, { createRuntime }, transport] = await Promise.all([
    import('./config.js'),
    import('./log.js'),
    import('./runtime.js'),
    loadTransport(),
  ]);
  const config = loadConfig(env);
  const runtime = createRuntime(config, createLogger(config.logLevel));
  runtime.lifecycle.installProcessHandlers();
  await transport(runtime);
}

const serveStdio = () => serve(process.env, async () => (await import('./transports/stdio.js')).serveStdio);

async function runProgram(argv: string[]): Promise<void> {
  const { Command } = await import('commander');
  const { packageVersion } = await import('./version.js');
  const program = new Command()
    .name('opencode-env')
    .description('MCP server for sandboxed coding-agent rollouts and persistent Python')
    .version(packageVersion);

  program
    .command('stdio', { isDefault: true })
    .description('serve MCP over stdin/stdout (what MCP hosts such as Claude Desktop launch)')
    .action(serveStdio);

  program
    .command('http')
    .description('serve MCP (Streamable HTTP), the OpenEnv REST and WebSocket protocol and the web UI over HTTP')
    .option('--host <host>', 'address to bind (default HOST, else 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default PORT, else 8000; 0 picks a free one)')
    .action(async (options: { host?: string; port?: string }) => {
      // Flags win over the environment; both are validated in one place.
      const env = { ...process.env, ...(options.host ? { HOST: options.host } : {}), ...(options.port ? { PORT: options.port } : {}) };
      await serve(env, async () => (await import('./transports/http/serve.js')).serveHttpMode);
    });

  program
    .command('rollout')
    .description('run one rollout of a task file on the configured sandbox backend (local, or E2B with E2B_API_KEY) and print the reward')
    .option('--task <file>', 'task JSON: run_rollout arguments (instruction, test_script/verify, setup, files, ...)')
    .option('--harbor <dir>', 'a Harbor task directory (task.toml, instruction.md, tests/, environment/, solution/) instead of --task')
    .option('--agent <agent>', "opencode, or oracle: run the task's solution (solution/solve.sh) instead of a model")
    .option('--scripted-llm <script>', 'answer with an offline scripted model (JSON script) instead of a real endpoint')
    .option('--endpoint <name>', 'vllm | openai | hf_router (configured by environment variables)')
    .option('--base-url <url>', 'OpenAI-compatible base URL ending in /v1')
    .option('--model <name>', 'model name')
    .option('--api-key-env <var>', 'environment variable holding the API key')
    .option('--mode <mode>', 'transparent_proxy | black_box')
    .option('--agent-timeout <seconds>', 'agent time limit')
    .option('--json', 'print the full result as JSON, and log JSON lines on stderr')
    .action(async (options) => {
      const { runRolloutCommand } = await import('./commands/rollout.js');
      process.exitCode = await runRolloutCommand(options);
    });

  program
    .command('batch <dataset>')
    .description(
      'run K samples of every task of a dataset (JSONL of run_rollout arguments, a directory of task JSON files, or of Harbor tasks), ' +
        'N at a time; results.jsonl (one line per rollout, resumable) and summary.json in --out',
    )
    .requiredOption('--samples <k>', 'rollouts per task (a GRPO group)')
    .requiredOption('--concurrency <n>', 'rollouts at once')
    .requiredOption('--out <dir>', 'where results.jsonl and summary.json go')
    .option('--retries <r>', 'retries per rollout for infrastructure failures (sandbox, upstream, setup, verifier timeout, internal)', '0')
    .option('--resume', 'skip the (task, sample) pairs already in results.jsonl')
    .option('--retry-delay-ms <ms>', 'backoff before the first retry (doubles per retry, jittered, at most 60 s)')
    .option('--progress-interval <seconds>', 'seconds between progress lines when stderr is not a terminal', '10')
    .option('--scripted-llm <script>', 'answer with an offline scripted model (JSON script) instead of the endpoints of the tasks')
    .option('--endpoint <name>', 'vllm | openai | hf_router, for every task')
    .option('--base-url <url>', 'OpenAI-compatible base URL ending in /v1, for every task')
    .option('--model <name>', 'model name, for every task')
    .option('--api-key-env <var>', 'environment variable holding the API key')
    .option(
      '--agent <agent>',
      "opencode, or oracle: run each task's oracle_script (a Harbor task's solution/solve.sh) to validate tasks without a model",
    )
    .action(async (dataset: string, options) => {
      const { runBatchCommand } = await import('./commands/batch.js');
      process.exitCode = await runBatchCommand(dataset, options);
    });

  const traces = program.command('traces').description('stored rollout traces');
  traces
    .command('list')
    .description('list traces, newest first')
    .option('--limit <n>', 'at most this many', '50')
    .action(async (options) => (await import('./commands/traces.js')).listTraces(options));
  traces
    .command('show <rollout_id>')
    .description('print one trace as JSON')
    .action(async (rolloutId: string) => {
      process.exitCode = await (await import('./commands/traces.js')).showTrace(rolloutId);
    });
  traces
    .command('export')
    .description('write JSONL for training: per rollout its agent turns (turns), or merged token sequences with loss masks (tokens)')
    .option(
      '--format <format>',
      'turns: one rollout per line with its LLM calls; tokens: one training sequence per line; atif: DIR/<rollout_id>/trajectory.json (Harbor ATIF)',
      'turns',
    )
    .option('--out <file>', 'write here instead of stdout (a directory, for atif)')
    .option('--include-failed', 'also export rollouts without a reward')
    .option('--all-turns', 'include title and auxiliary LLM calls (format turns)')
    .action(async (options) => {
      process.exitCode = await (await import('./commands/traces.js')).exportTraces(options);
    });

  program
    .command('mcp-config')
    .description('print the JSON that adds this server to an MCP host (absolute paths: works from any directory)')
    .option('--host <host>', 'claude-desktop | claude-code | cursor | vscode', 'claude-desktop')
    .action(async (options: { host: string }) => {
      const { runMcpConfigCommand } = await import('./commands/mcp-config.js');
      process.exitCode = runMcpConfigCommand(options);
    });

  program
    .command('gc')
    .description('kill the E2B sandboxes whose server instance is gone (needs E2B_API_KEY); prints a table of what it found')
    .option('--dry-run', 'only show what would be killed')
    .option('--all-hosts', "also kill sandboxes of other hosts' instances, which cannot be checked from here")
    .action(async (options: { dryRun?: boolean; allHosts?: boolean }) => {
      process.exitCode = await (await import('./commands/gc.js')).runGcCommand(options);
    });

  program
    .command('scripted-llm')
    .description('serve an OpenAI-compatible model that replays a script of assistant turns (for offline rollouts and tests)')
    .requiredOption('--script <file>', 'JSON script: {"title"?, "turns": [{"text"?, "reasoning"?, "tool_calls"?, "error"?, ...}]}')
    .option('--port <port>', 'port to listen on (0 picks a free one)', '0')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--api-key <key>', 'require this bearer token')
    .option('--log <file>', 'append every request received as a JSON line')
    .action(async (options) => (await import('./commands/scripted-llm.js')).runScriptedLlm(options));

  program
    .command('proxy')
    .description('run the recording proxy on its own (upstream key from OPENCODE_ENV_UPSTREAM_API_KEY)')
    .requiredOption('--upstream <url>', 'OpenAI-compatible base URL ending in /v1')
    .option('--port <port>', 'port to listen on', '0')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--turns <file>', 'append every recorded turn as a JSON line')
    .option('--top-logprobs <n>', 'alternatives per token to request', '5')
    .option('--disable-thinking', 'inject chat_template_kwargs.enable_thinking = false')
    .option('--max-tokens-cap <n>', 'upper bound for max_tokens')
    .option('--relay-only', 'forward without injecting or recording')
    .option('--max-failures <n>', 'upstream failures in a row before answering with a non-retryable error', '3')
    .action(async (options) => (await import('./commands/proxy.js')).runProxyCommand(options));

  const template = program.command('template').description('the E2B template sandboxes start from (resources/e2b/template.json)');
  template
    .command('build')
    .description('build the template on E2B (needs E2B_API_KEY); logs on stderr, the template name on stdout')
    .option('--name <name>', 'template name or name:tag (default: OPENCODE_ENV_E2B_TEMPLATE, else opencode-env)')
    .option('--cpu <n>', "vCPUs of the template's sandboxes (default: the definition's)")
    .option('--memory-mb <n>', "memory of the template's sandboxes in MiB (default: the definition's)")
    .action(async (options) => {
      process.exitCode = await (await import('./commands/template.js')).runTemplateBuild(options);
    });
  template
    .command('show')
    .description('print the template as a Dockerfile, for review (offline)')
    .action(async () => {
      process.exitCode = (await import('./commands/template.js')).runTemplateShow();
    });

  await program.parseAsync(argv, { from: 'user' });
}

const args = process.argv.slice(2);
try {
  if (args.length === 0 || (args.length === 1 && args[0] === 'stdio')) {
    await serveStdio();
  } else if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
    process.stdout.write(`${(await import('./version.js')).packageVersion}\n`);
  } else {
    await runProgram(args);
  }
} catch (error) {
  process.stderr.write(`opencode-env: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(error instanceof ConfigError ? 2 : 1);
}
