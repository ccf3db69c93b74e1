import type { Duplex } from 'node:stream';
import { SandboxError } from '../../errors.js';
import type { LlmChannel, Sandbox } from '../types.js';
import { RelayMux } from './relay-mux.js';

/** How long the relay may take to start listening inside the sandbox. */
const RELAY_START_TIMEOUT_MS = 30_000;

/**
 * An LLM channel for a sandbox that shares one network among its commands but has no route to the server
 * (a remote backend): a relay process runs for the sandbox's life, listening on 127.0.0.1 inside it, and
 * carries each connection over its own stdin and stdout. The URL is then plain: any later command may use it.
 */
export async function openRelayLlmChannel(sandbox: Sandbox, accept: (connection: Duplex) => void): Promise<LlmChannel> {
  const [node, relay] = await Promise.all([sandbox.binaryPath('node'), sandbox.resourcePath('sandbox/llm-relay.mjs')]);
  let mux: RelayMux | null = null;
  const early: Buffer[] = [];
  const relayProcess = await sandbox.start([node, relay], {
    onStdout: (chunk) => (mux ? mux.push(chunk) : early.push(chunk)),
  });
  mux = new RelayMux({ write: (text) => relayProcess.write(text), accept });
  for (const chunk of early.splice(0)) mux.push(chunk);

  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    mux.port.then((port) => ({ port })),
    relayProcess.exited.then((exit) => ({ exit })),
    new Promise<{ timeout: true }>((resolve) => (timer = setTimeout(() => resolve({ timeout: true }), RELAY_START_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (!('port' in outcome)) {
    await relayProcess.kill();
    const why =
      'exit' in outcome ? `it exited with code ${outcome.exit.exitCode}` : `it did not listen within ${RELAY_START_TIMEOUT_MS / 1000} s`;
    throw new SandboxError(`the LLM relay could not start in sandbox ${sandbox.id}: ${why}`);
  }
  const activeMux = mux;
  let closing: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${outcome.port}`,
    command: async (argv) => argv,
    close: () => {
      closing ??= (async () => {
        activeMux.close();
        await relayProcess.kill();
      })();
      return closing;
    },
  };
}
