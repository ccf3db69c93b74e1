import { randomBytes } from 'node:crypto';
import { chmod, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { SandboxError } from '../../errors.js';
import type { LlmChannel } from '../types.js';

/** Replaced by the in-sandbox bridge (resources/sandbox/llm-bridge.mjs) with the loopback port it listens on. */
const PORT_PLACEHOLDER = '__OPENCODE_ENV_LLM_PORT__';

export interface LocalChannelPaths {
  /** The sandbox's channel directory on the host, and where it is mounted (read-only) inside. */
  hostDir: string;
  sandboxDir: string;
  /** Inside the sandbox: the node binary and the bridge script that runs the command. */
  node: string;
  bridge: string;
}

/**
 * The local backend's LLM channel: the host listens on a unix socket in the sandbox's channel directory,
 * and a bridge inside the sandbox gives the command an HTTP endpoint on 127.0.0.1 relayed to that socket.
 * A network namespace of its own per command means the bridge picks its port at run time, so the URL holds
 * a placeholder that the bridge fills in the command's arguments and environment.
 */
export async function openLocalLlmChannel(paths: LocalChannelPaths, accept: (connection: Duplex) => void): Promise<LlmChannel> {
  const socketName = `llm-${randomBytes(4).toString('hex')}.sock`;
  const hostSocket = path.join(paths.hostDir, socketName);
  // sockaddr_un holds 108 bytes; past that, listen() fails with an error that names nothing useful.
  if (Buffer.byteLength(hostSocket) > 107) {
    throw new SandboxError(
      `the sandbox directory's path is too long for a unix socket (${hostSocket}); set OPENCODE_ENV_SANDBOX_DIR to a shorter directory`,
    );
  }
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    accept(socket);
  });
  await rm(hostSocket, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(hostSocket, resolve);
  });
  // The sandbox user (possibly another uid) must be able to connect.
  await chmod(hostSocket, 0o666);
  let closing: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${PORT_PLACEHOLDER}`,
    command: async (argv) => [paths.node, paths.bridge, path.posix.join(paths.sandboxDir, socketName), PORT_PLACEHOLDER, '--', ...argv],
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}
