import { execa } from 'execa';
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

export interface PythonInstall {
  /** The real interpreter binary (shims such as pyenv's resolved away). */
  executable: string;
  version: string;
  /** Directories the interpreter needs to see: its prefix and, in a venv, the base prefix. */
  prefixes: string[];
}

export async function findOnPath(command: string): Promise<string | null> {
  const result = await execa('sh', ['-c', 'command -v "$1"', 'sh', command], { reject: false, timeout: 5000 });
  const found = result.stdout.trim();
  return result.exitCode === 0 && found.startsWith('/') ? found : null;
}

const PYTHON_PROBE = 'import json, sys; print(json.dumps([sys.executable, sys.version.split()[0], sys.prefix, sys.base_prefix]))';

export async function probePython(executable: string): Promise<PythonInstall | { error: string }> {
  const result = await execa(executable, ['-c', PYTHON_PROBE], { reject: false, timeout: 15_000 });
  if (result.exitCode !== 0) {
    const reason = result.failed && result.exitCode === undefined ? result.shortMessage : result.stderr.trim();
    return { error: `Python interpreter '${executable}' is not usable: ${reason || `exit code ${result.exitCode}`}. Set OPENCODE_ENV_PYTHON to a Python 3 interpreter.` };
  }
  const [realExecutable, version, prefix, basePrefix] = JSON.parse(result.stdout.trim()) as string[];
  if (!realExecutable || !version || !prefix || !basePrefix) return { error: `Python interpreter '${executable}' reported no executable path` };
  return {
    executable: realExecutable,
    version,
    prefixes: [...new Set([path.resolve(prefix), path.resolve(basePrefix)])],
  };
}

/** Runs a trivial command under the exact namespace flags we use, because installed is not the same as working (e.g. userns restrictions). */
async function bwrapWorks(bwrap: string, extraArgs: string[]): Promise<string | null> {
  const result = await execa(
    bwrap,
    ['--die-with-parent', '--unshare-pid', '--unshare-ipc', ...extraArgs, '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--', 'true'],
    { reject: false, timeout: 10_000 },
  );
  return result.exitCode === 0 ? null : (result.stderr.trim() || result.shortMessage || `exit code ${result.exitCode}`);
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
    const help = await execa(setpriv, ['--help'], { reject: false, timeout: 5000 });
    setprivHasPdeathsig = help.stdout.includes('--pdeathsig');
  }
  return { bwrap, bwrapProblem, prlimit, setpriv, setprivHasPdeathsig, python };
}
