import { execFile } from 'node:child_process';
import path from 'node:path';

/** What this machine offers the local backend, found once per process. */
export interface HostCapabilities {
  bwrap: string | null;
  /** Why bubblewrap cannot be used here, when it is installed but fails. */
  bwrapProblem: string | null;
  prlimit: string | null;
  setpriv: string | null;
  setprivHasPdeathsig: boolean;
  python: PythonInstall | { error: string };
}

interface PythonInstall {
  /** The real interpreter binary (shims such as pyenv's resolved away). */
  executable: string;
  version: string;
  /** Directories the interpreter needs to see: its prefix and, in a venv, the base prefix. */
  prefixes: string[];
}

interface ProbeResult {
  /** null when the program could not start or was killed (see `failure`). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  failure: string | null;
}

/** Runs a short probe to completion; never throws. */
function probe(file: string, args: string[], timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (!error) return resolve({ exitCode: 0, stdout, stderr, failure: null });
      const exitCode = typeof error.code === 'number' ? error.code : null;
      resolve({ exitCode, stdout, stderr, failure: exitCode === null ? error.message : null });
    });
  });
}

async function findOnPath(command: string): Promise<string | null> {
  const result = await probe('sh', ['-c', 'command -v "$1"', 'sh', command], 5000);
  const found = result.stdout.trim();
  return result.exitCode === 0 && found.startsWith('/') ? found : null;
}

const PYTHON_PROBE = 'import json, sys; print(json.dumps([sys.executable, sys.version.split()[0], sys.prefix, sys.base_prefix]))';

async function probePython(executable: string): Promise<PythonInstall | { error: string }> {
  const result = await probe(executable, ['-c', PYTHON_PROBE], 15_000);
  if (result.exitCode !== 0) {
    const reason = result.failure ?? result.stderr.trim();
    return {
      error: `Python interpreter '${executable}' is not usable: ${reason || `exit code ${result.exitCode}`}. Set OPENCODE_ENV_PYTHON to a Python 3 interpreter.`,
    };
  }
  const [realExecutable, version, prefix, basePrefix] = JSON.parse(result.stdout.trim()) as string[];
  if (!realExecutable || !version || !prefix || !basePrefix)
    return { error: `Python interpreter '${executable}' reported no executable path` };
  return {
    executable: realExecutable,
    version,
    prefixes: [...new Set([path.resolve(prefix), path.resolve(basePrefix)])],
  };
}

/** Runs a trivial command under the exact namespace flags we use, because installed is not the same as working (e.g. userns restrictions). */
async function bwrapWorks(bwrap: string, extraArgs: string[]): Promise<string | null> {
  // prettier-ignore
  const args = ['--die-with-parent', '--unshare-pid', '--unshare-ipc', ...extraArgs, '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--', 'true'];
  const result = await probe(bwrap, args, 10_000);
  return result.exitCode === 0 ? null : result.stderr.trim() || result.failure || `exit code ${result.exitCode}`;
}

export async function probeHost(pythonExecutable: string, needNetworkNamespace: boolean): Promise<HostCapabilities> {
  const [bwrap, prlimit, setpriv, python] = await Promise.all([
    findOnPath('bwrap'),
    findOnPath('prlimit'),
    findOnPath('setpriv'),
    probePython(pythonExecutable),
  ]);
  const bwrapProblem = bwrap ? await bwrapWorks(bwrap, needNetworkNamespace ? ['--unshare-net'] : []) : null;
  let setprivHasPdeathsig = false;
  if (setpriv) {
    const help = await probe(setpriv, ['--help'], 5000);
    setprivHasPdeathsig = help.stdout.includes('--pdeathsig');
  }
  return { bwrap, bwrapProblem, prlimit, setpriv, setprivHasPdeathsig, python };
}
