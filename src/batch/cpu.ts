import { readFileSync } from 'node:fs';

/** Linux reports /proc times in USER_HZ, which is 100 on every architecture Node supports. */
const USER_HZ = 100;

/**
 * CPU seconds of this process's finished (reaped) child processes, and theirs, from /proc/self/stat
 * (cutime + cstime); null where there is no /proc. A lower bound: a sandbox's processes count only when bwrap
 * reaped them before the sandbox was killed as a whole (cgroup kill), which takes their usage with them.
 */
export function childrenCpuSeconds(): number | null {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after the command name (which may hold spaces), starting at field 3; cutime and cstime are fields 16 and 17.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[13]) + Number(fields[14])) / USER_HZ;
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) of this process so far. */
export function selfCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}
