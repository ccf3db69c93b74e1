import { spawn } from 'node:child_process';
import { cliPath, makeHomeDir, makeSystemTempDir, removeDir } from './server.js';

/** The built server in HTTP mode, as the HTTP tests drive it. */
export interface HttpServerProcess {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The same with `ws:`. */
  wsUrl: string;
  pid: number;
  /** OPENCODE_ENV_SANDBOX_DIR: the local backend's sandbox directories. */
  sandboxRoot: string;
  /** OPENCODE_ENV_DATA_DIR: traces live in <dataDir>/traces. */
  dataDir: string;
  stderr(): string;
  /** SIGTERM (SIGKILL after 15 s), then its directories are removed. */
  stop(): Promise<void>;
}

/** Spawns `node dist/cli.js http --port 0` on the local backend and waits for its `serving HTTP on <url>` line. */
export async function startHttpServer(env: Record<string, string> = {}): Promise<HttpServerProcess> {
  // Short names: sandbox paths hold unix sockets, whose paths may not exceed 107 bytes.
  const [sandboxRoot, dataDir, home] = [makeSystemTempDir('hs'), makeSystemTempDir('hd'), makeHomeDir()];
  const child = spawn(process.execPath, [cliPath, 'http', '--port', '0'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      OPENCODE_ENV_SANDBOX: 'local',
      OPENCODE_ENV_SANDBOX_DIR: sandboxRoot,
      OPENCODE_ENV_DATA_DIR: dataDir,
      OPENCODE_ENV_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${stderr}`)), 30_000);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
      const match = /serving HTTP on (http:\/\/[^\s"]+)/.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}):\n${stderr}`));
    });
  });
  return {
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    pid: child.pid!,
    sandboxRoot,
    dataDir,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      for (const dir of [sandboxRoot, dataDir, home]) removeDir(dir);
    },
  };
}
