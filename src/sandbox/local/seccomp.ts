import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';

/**
 * A seccomp filter for bubblewrap's `--seccomp FD`, which takes a compiled classic-BPF program: an array
 * of `struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }` in host byte order. libseccomp would build
 * it, but it is not always installed and this program is short, so it is assembled here.
 *
 * The program runs on every syscall with `struct seccomp_data { u32 nr; u32 arch; u64 ip; u64 args[6]; }`.
 * It allows everything except the calls below, which fail with EPERM as if the kernel refused them.
 */

/** AUDIT_ARCH_* values of the architectures whose syscall tables are below (linux/audit.h). */
export const AUDIT_ARCH = { x86_64: 0xc000003e, aarch64: 0xc00000b7 } as const;
type Arch = keyof typeof AUDIT_ARCH;

/** On x86_64, syscalls of the x32 ABI carry this bit in `nr`; they have a table of their own, so they are refused. */
export const X32_SYSCALL_BIT = 0x40000000;

/** Syscall numbers: x86_64 from asm/unistd_64.h, aarch64 from the generic table (asm-generic/unistd.h); null where absent. */
type SyscallNumbers = Record<Arch, number | null>;

/** Calls that fail with EPERM, each with the reason it is denied. */
export const DENIED_SYSCALLS: Record<string, SyscallNumbers & { why: string }> = {
  // The mount family: a sandbox must not reshape its view of the filesystem.
  mount: { x86_64: 165, aarch64: 40, why: 'mounts' },
  umount2: { x86_64: 166, aarch64: 39, why: 'mounts' },
  pivot_root: { x86_64: 155, aarch64: 41, why: 'mounts' },
  open_tree: { x86_64: 428, aarch64: 428, why: 'mounts' },
  move_mount: { x86_64: 429, aarch64: 429, why: 'mounts' },
  fsopen: { x86_64: 430, aarch64: 430, why: 'mounts' },
  fsconfig: { x86_64: 431, aarch64: 431, why: 'mounts' },
  fsmount: { x86_64: 432, aarch64: 432, why: 'mounts' },
  fspick: { x86_64: 433, aarch64: 433, why: 'mounts' },
  mount_setattr: { x86_64: 442, aarch64: 442, why: 'mounts' },
  // Joining another namespace (the creation of new ones is checked by flags, below).
  setns: { x86_64: 308, aarch64: 268, why: 'namespaces' },
  // The filter sees a pid, not whose process it is, so it cannot allow tracing the sandbox's own processes
  // and deny the rest: all tracing and cross-process memory or fd access is denied (no gdb or strace inside).
  ptrace: { x86_64: 101, aarch64: 117, why: 'other processes' },
  process_vm_readv: { x86_64: 310, aarch64: 270, why: 'other processes' },
  process_vm_writev: { x86_64: 311, aarch64: 271, why: 'other processes' },
  pidfd_getfd: { x86_64: 438, aarch64: 438, why: 'other processes' },
  // The kernel itself: modules, kexec, eBPF, the keyring (not namespaced), swap, reboot, accounting, its log.
  init_module: { x86_64: 175, aarch64: 105, why: 'kernel' },
  finit_module: { x86_64: 313, aarch64: 273, why: 'kernel' },
  delete_module: { x86_64: 176, aarch64: 106, why: 'kernel' },
  kexec_load: { x86_64: 246, aarch64: 104, why: 'kernel' },
  kexec_file_load: { x86_64: 320, aarch64: 294, why: 'kernel' },
  bpf: { x86_64: 321, aarch64: 280, why: 'kernel' },
  add_key: { x86_64: 248, aarch64: 217, why: 'keyring' },
  request_key: { x86_64: 249, aarch64: 218, why: 'keyring' },
  keyctl: { x86_64: 250, aarch64: 219, why: 'keyring' },
  swapon: { x86_64: 167, aarch64: 224, why: 'kernel' },
  swapoff: { x86_64: 168, aarch64: 225, why: 'kernel' },
  reboot: { x86_64: 169, aarch64: 142, why: 'kernel' },
  acct: { x86_64: 163, aarch64: 89, why: 'kernel' },
  syslog: { x86_64: 103, aarch64: 116, why: 'kernel' },
  // Old container breakouts and large attack surfaces for little use in a sandbox (as Docker's default profile).
  open_by_handle_at: { x86_64: 304, aarch64: 265, why: 'filesystem handles' },
  perf_event_open: { x86_64: 298, aarch64: 241, why: 'kernel' },
  userfaultfd: { x86_64: 323, aarch64: 282, why: 'kernel' },
  lookup_dcookie: { x86_64: 212, aarch64: 18, why: 'kernel' },
  // io_uring operations bypass seccomp entirely; libuv and others fall back to threads when it is refused.
  io_uring_setup: { x86_64: 425, aarch64: 425, why: 'kernel' },
  io_uring_enter: { x86_64: 426, aarch64: 426, why: 'kernel' },
  io_uring_register: { x86_64: 427, aarch64: 427, why: 'kernel' },
  // The clock is not namespaced.
  settimeofday: { x86_64: 164, aarch64: 170, why: 'clock' },
  clock_settime: { x86_64: 227, aarch64: 112, why: 'clock' },
  clock_adjtime: { x86_64: 305, aarch64: 266, why: 'clock' },
  // Raw I/O ports (x86 only).
  iopl: { x86_64: 172, aarch64: null, why: 'hardware' },
  ioperm: { x86_64: 173, aarch64: null, why: 'hardware' },
};

/** Calls allowed unless their first argument (the flags) asks for a new namespace. */
export const NAMESPACE_FLAG_SYSCALLS: Record<string, SyscallNumbers> = {
  clone: { x86_64: 56, aarch64: 220 },
  unshare: { x86_64: 272, aarch64: 97 },
};

/**
 * clone3 passes its flags in a struct the filter cannot read, so it gets ENOSYS and libc falls back to
 * clone, whose flags it can (as Docker and Flatpak do).
 */
export const CLONE3: SyscallNumbers = { x86_64: 435, aarch64: 435 };

/**
 * CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET. Only a new user namespace gives an
 * unprivileged process new powers (the others need CAP_SYS_ADMIN, which sandbox processes lack), but none
 * has a use inside a sandbox. All fit in the low 32 bits of the flags, the only part the kernel reads.
 */
export const NAMESPACE_FLAGS = 0x7e020000;

const EPERM = 1;
const ENOSYS = 38;

/** Return values (linux/seccomp.h). */
export const SECCOMP_RET = {
  allow: 0x7fff0000,
  errno: 0x00050000,
  killProcess: 0x80000000,
} as const;

/** Classic BPF opcodes (linux/filter.h), only those used here. */
export const BPF = {
  ldAbsWord: 0x20, // BPF_LD | BPF_W | BPF_ABS: A = 32-bit word at offset k of seccomp_data
  jeq: 0x15, // BPF_JMP | BPF_JEQ | BPF_K: A == k ? jt : jf
  jge: 0x35, // BPF_JMP | BPF_JGE | BPF_K: A >= k ? jt : jf
  jset: 0x45, // BPF_JMP | BPF_JSET | BPF_K: A & k ? jt : jf
  ret: 0x06, // BPF_RET | BPF_K: return k
} as const;

/** Offsets in struct seccomp_data; an argument's low 32 bits come first on little-endian machines. */
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const OFFSET_ARG0_LOW = 16;

/** One instruction; jump targets are labels, resolved to relative offsets when assembled. */
interface Instruction {
  code: number;
  k: number;
  jt?: string;
  jf?: string;
}

type Line = Instruction | { label: string };

const ld = (offset: number): Instruction => ({ code: BPF.ldAbsWord, k: offset });
/** A conditional jump: to `then` when the condition holds, else to the next instruction. */
const jumpIf = (code: number, k: number, then: string): Instruction => ({ code, k, jt: then });
const ret = (k: number): Instruction => ({ code: BPF.ret, k });
const label = (name: string): Line => ({ label: name });

/** The rules for one architecture's syscall numbers; every path ends in one of the shared returns. */
function archRules(arch: Arch): Line[] {
  const lines: Line[] = [label(arch), ld(OFFSET_NR)];
  if (arch === 'x86_64') lines.push(jumpIf(BPF.jge, X32_SYSCALL_BIT, 'enosys'));
  for (const numbers of Object.values(DENIED_SYSCALLS)) {
    const nr = numbers[arch];
    if (nr !== null) lines.push(jumpIf(BPF.jeq, nr, 'eperm'));
  }
  for (const numbers of Object.values(NAMESPACE_FLAG_SYSCALLS)) lines.push(jumpIf(BPF.jeq, numbers[arch]!, 'namespaceFlags'));
  lines.push(jumpIf(BPF.jeq, CLONE3[arch]!, 'enosys'));
  lines.push(ret(SECCOMP_RET.allow));
  return lines;
}

function program(): Line[] {
  return [
    ld(OFFSET_ARCH),
    jumpIf(BPF.jeq, AUDIT_ARCH.x86_64, 'x86_64'),
    jumpIf(BPF.jeq, AUDIT_ARCH.aarch64, 'aarch64'),
    // Another ABI (e.g. 32-bit calls through int 0x80 on x86_64) would be read against the wrong table.
    ret(SECCOMP_RET.killProcess),
    ...archRules('x86_64'),
    ...archRules('aarch64'),
    label('namespaceFlags'),
    ld(OFFSET_ARG0_LOW),
    jumpIf(BPF.jset, NAMESPACE_FLAGS, 'eperm'),
    ret(SECCOMP_RET.allow),
    label('eperm'),
    ret(SECCOMP_RET.errno | EPERM),
    label('enosys'),
    ret(SECCOMP_RET.errno | ENOSYS),
  ];
}

/** Resolves labels to the relative forward offsets BPF jumps use (at most 255) and encodes `struct sock_filter`s. */
function assemble(lines: Line[]): Buffer {
  const instructions: Instruction[] = [];
  const labels = new Map<string, number>();
  for (const line of lines) {
    if ('label' in line) labels.set(line.label, instructions.length);
    else instructions.push(line);
  }
  const offset = (from: number, target: string | undefined): number => {
    if (target === undefined) return 0;
    const to = labels.get(target);
    if (to === undefined) throw new Error(`seccomp filter: unknown label ${target}`);
    const relative = to - (from + 1);
    if (relative < 0 || relative > 255) throw new Error(`seccomp filter: jump to ${target} out of range (${relative})`);
    return relative;
  };
  const out = Buffer.alloc(instructions.length * 8);
  instructions.forEach((insn, i) => {
    out.writeUInt16LE(insn.code, i * 8);
    out.writeUInt8(offset(i, insn.jt), i * 8 + 2);
    out.writeUInt8(offset(i, insn.jf), i * 8 + 3);
    out.writeUInt32LE(insn.k >>> 0, i * 8 + 4);
  });
  return out;
}

/** The compiled filter, in the layout of little-endian machines (both supported architectures). */
export function compileSeccompFilter(): Buffer {
  return assemble(program());
}

/** Whether this machine runs one of the architectures the filter has tables for; elsewhere sandboxes run without it. */
export function seccompSupported(): boolean {
  return (process.arch === 'x64' || process.arch === 'arm64') && os.endianness() === 'LE';
}

let compiled: Buffer | null = null;

/** Writes the filter (compiled once per process) to `file`, readable by all, unless a previous launch already did. */
export function writeSeccompFilter(file: string): void {
  if (existsSync(file)) return;
  compiled ??= compileSeccompFilter();
  writeFileSync(file, compiled);
  chmodSync(file, 0o644); // whatever the umask
}
