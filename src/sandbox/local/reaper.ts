import { spawn } from 'node:child_process';

/**
 * A server killed outright (SIGKILL, OOM) cannot clean up: its sandboxes' processes die with it (bwrap's
 * --die-with-parent, setpriv's --pdeathsig), but their tmpfs mounts (RAM), cgroups and uid locks would stay until the
 * next server using the same directory starts. So each root server starts one small shell that waits until the
 * server is gone (its stdin, a pipe from the server, reaches end of file) and then releases what the server's
 * sandboxes held on the host: everything is found again from the server's pid, so the shell keeps no state. Their
 * directories (on disk) are left, as before, to the next server (`removeOrphanedSandboxes`).
 */
const REAPER_SCRIPT = `
pid=$1 root=$2 locks=$3; shift 3
cat > /dev/null
for parent in "$@"; do
  for group in "$parent"/opencode-env-"$pid"-*; do
    [ -d "$group" ] || continue
    i=0
    while [ -n "$(cat "$group/cgroup.procs" 2>/dev/null)" ] && [ $i -lt 100 ]; do
      [ -e "$group/cgroup.kill" ] && echo 1 > "$group/cgroup.kill"
      for p in $(cat "$group/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      sleep 0.05; i=$((i + 1))
    done
  done
done
for owner in "$root"/opencode-env-*/owner.json; do
  grep -q "^{\\"pid\\":$pid," "$owner" 2>/dev/null || continue
  dir=\${owner%/owner.json}
  umount -l "$dir/scratch" 2>/dev/null
  umount -l "$dir/netns" 2>/dev/null
done
for parent in "$@"; do
  for group in "$parent"/opencode-env-"$pid"-*; do [ -d "$group" ] && rmdir "$group" 2>/dev/null; done
done
for lock in "$locks"/*; do
  case "$(cat "$lock" 2>/dev/null)" in "$pid "*) rm -f "$lock" ;; esac
done
`;

const started = new Set<string>();

/** Starts the reaper for this process (once per set of places); it neither keeps the server alive nor dies with its process group. */
export function startReaper(rootDir: string, lockDir: string, cgroupParents: string[]): void {
  const key = JSON.stringify([rootDir, lockDir, cgroupParents]);
  if (started.has(key)) return;
  started.add(key);
  const child = spawn('/bin/sh', ['-c', REAPER_SCRIPT, 'opencode-env-reaper', String(process.pid), rootDir, lockDir, ...cgroupParents], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  child.once('error', () => undefined);
  child.stdin.on('error', () => undefined);
  child.unref();
  // The pipe is a socket: unref'd, it does not hold the event loop; it closes when this process ends, however it ends.
  (child.stdin as unknown as { unref?: () => void }).unref?.();
}
