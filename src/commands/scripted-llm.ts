import { loadScript } from '../scripted-llm/script.js';
import { startScriptedLlm } from '../scripted-llm/server.js';

/** `opencode-env scripted-llm`: serves until SIGINT/SIGTERM; prints the base URL on stdout for scripts. */
export async function runScriptedLlm(opts: { script: string; port: string; host: string; apiKey?: string; log?: string }): Promise<void> {
  const server = await startScriptedLlm({
    script: await loadScript(opts.script),
    port: Number(opts.port),
    host: opts.host,
    ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
    ...(opts.log ? { logFile: opts.log } : {}),
  });
  process.stdout.write(`${server.url}\n`);
  process.stderr.write(`scripted model listening on ${server.url} (script ${opts.script})\n`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
