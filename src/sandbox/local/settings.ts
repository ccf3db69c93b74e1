/** Where sandbox processes may connect: `isolated` gives each command its own empty network namespace. */
export type SandboxNetwork = 'isolated' | 'host';
/** `auto` uses bubblewrap when it works on this machine; `bwrap` insists on it; `none` runs plain child processes. */
type IsolationMode = 'auto' | 'bwrap' | 'none';

export interface ResourceLimits {
  fileSizeBytes: number;
  cpuSeconds: number;
  /** Processes and threads per sandbox (its cgroup's pids.max, and RLIMIT_NPROC of its own uid). */
  processes: number;
  /** Memory of the whole sandbox, its /tmp included (its cgroup's limit, where cgroups can be made). */
  memoryBytes: number;
  /** Size of the sandbox's /tmp (a tmpfs, where the server can mount one). */
  tmpBytes: number;
}

/** The local backend's settings (the `local` section of the server's config). */
export interface LocalSandboxSettings {
  isolation: IsolationMode;
  network: SandboxNetwork;
  /** Host directory under which each local sandbox gets its own folder. */
  rootDir: string;
  limits: ResourceLimits;
  /** Python interpreter for execute_python, as named in the environment (resolved at first use). */
  pythonExecutable: string;
}
