import { createWriteStream } from 'node:fs';
import { startRecordingProxy } from '../core/proxy/recording-proxy.js';

export interface ProxyCommandOptions {
  upstream: string;
  port: string;
  host: string;
  turns?: string;
  topLogprobs: string;
  disableThinking?: boolean;
  maxTokensCap?: string;
  relayOnly?: boolean;
  maxFailures: string;
}

/**
 * `opencode-env proxy`: the recording proxy on its own, for sandboxes that cannot reach this machine
 * (it then runs inside them). The upstream key comes from OPENCODE_ENV_UPSTREAM_API_KEY, never argv.
 */
export async function runProxyCommand(options: ProxyCommandOptions): Promise<void> {
  const apiKey = process.env.OPENCODE_ENV_UPSTREAM_API_KEY;
  // Appended asynchronously: a synchronous write per turn would stall the streams the proxy is relaying.
  const turnsLog = options.turns ? createWriteStream(options.turns, { flags: 'a' }) : null;
  const proxy = await startRecordingProxy({
    upstreamBaseUrl: options.upstream,
    ...(apiKey ? { apiKey } : {}),
    record: !options.relayOnly,
    topLogprobs: Number(options.topLogprobs),
    requestTokenIds: true,
    disableThinking: options.disableThinking ?? false,
    maxTokensCap: options.maxTokensCap ? Number(options.maxTokensCap) : null,
    maxConsecutiveFailures: Number(options.maxFailures),
    listen: { port: Number(options.port), host: options.host },
    onTurn: (turn) => turnsLog?.write(`${JSON.stringify(turn)}\n`),
  });
  process.stdout.write(`${proxy.address}/v1\n`);
  process.stderr.write(
    `recording proxy on ${proxy.address}/v1 -> ${options.upstream}${options.turns ? `, turns to ${options.turns}` : ''}\n`,
  );
  const stop = () =>
    void proxy
      .close()
      .then(() => new Promise<void>((resolve) => (turnsLog ? turnsLog.end(resolve) : resolve())))
      .then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
