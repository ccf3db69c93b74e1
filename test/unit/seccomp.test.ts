// Covers the seccomp filter generator: the compiled program is decoded and run by a tiny classic-BPF interpreter
// for a table of (arch, syscall, flags), and its syscall numbers are checked against the kernel's headers.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  AUDIT_ARCH,
  BPF,
  CLONE3,
  compileSeccompFilter,
  DENIED_SYSCALLS,
  NAMESPACE_FLAG_SYSCALLS,
  NAMESPACE_FLAGS,
  SECCOMP_RET,
  X32_SYSCALL_BIT,
} from '../../src/sandbox/local/seccomp.js';

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

function decode(program: Buffer): Insn[] {
  assert.equal(program.length % 8, 0, 'a whole number of struct sock_filter');
  const out: Insn[] = [];
  for (let i = 0; i < program.length; i += 8) {
    out.push({ code: program.readUInt16LE(i), jt: program[i + 2]!, jf: program[i + 3]!, k: program.readUInt32LE(i + 4) });
  }
  return out;
}

/** struct seccomp_data as the kernel lays it out on a little-endian machine. */
function seccompData(arch: number, nr: number, arg0 = 0n): Buffer {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr >>> 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
  data.writeBigUInt64LE(arg0, 16);
  return data;
}

/** Runs the program the way the kernel does for the instructions it uses; fails on anything else. */
function run(program: Insn[], data: Buffer): number {
  let a = 0;
  for (let pc = 0; pc < program.length; pc++) {
    const { code, jt, jf, k } = program[pc]!;
    switch (code) {
      case BPF.ldAbsWord:
        assert.ok(k % 4 === 0 && k + 4 <= data.length, `aligned load inside seccomp_data at ${pc}`);
        a = data.readUInt32LE(k);
        break;
      case BPF.jeq:
        pc += a === k ? jt : jf;
        break;
      case BPF.jge:
        pc += a >= k ? jt : jf;
        break;
      case BPF.jset:
        pc += (a & k) !== 0 ? jt : jf;
        break;
      case BPF.ret:
        return k;
      default:
        assert.fail(`unexpected opcode 0x${code.toString(16)} at ${pc}`);
    }
  }
  return assert.fail('ran off the end of the program');
}

const program = decode(compileSeccompFilter());
const decide = (arch: keyof typeof AUDIT_ARCH | number, nr: number, arg0 = 0n) =>
  run(program, seccompData(typeof arch === 'number' ? arch : AUDIT_ARCH[arch], nr, arg0));

const ALLOW = SECCOMP_RET.allow;
const EPERM = SECCOMP_RET.errno | 1;
const ENOSYS = SECCOMP_RET.errno | 38;

const CLONE_NEWNS = 0x20000n;
const CLONE_NEWUSER = 0x10000000n;
const CLONE_NEWNET = 0x40000000n;
/** What glibc passes for fork() and for pthread_create(). */
const FORK_FLAGS = 0x01200011n;
const THREAD_FLAGS = 0x003d0f00n;

describe('seccomp filter program', () => {
  it('is a valid classic BPF program: short, every jump forward and inside it, ending in a return', () => {
    assert.ok(program.length > 0 && program.length <= 4096, `${program.length} instructions (BPF_MAXINSNS is 4096)`);
    program.forEach((insn, pc) => {
      if (insn.code !== BPF.ret && insn.code !== BPF.ldAbsWord) {
        assert.ok(pc + 1 + Math.max(insn.jt, insn.jf) < program.length, `jump at ${pc} stays inside the program`);
      }
    });
    assert.equal(program.at(-1)!.code, BPF.ret, 'the last instruction returns');
  });

  // Independent of the generator's table: numbers from the kernel's syscall tables, written out by hand.
  const table: Array<[string, keyof typeof AUDIT_ARCH, number, bigint, number]> = [
    ['read', 'x86_64', 0, 0n, ALLOW],
    ['write', 'aarch64', 64, 0n, ALLOW],
    ['openat', 'x86_64', 257, 0n, ALLOW],
    ['openat', 'aarch64', 56, 0n, ALLOW],
    ['execve', 'x86_64', 59, 0n, ALLOW],
    ['execve', 'aarch64', 221, 0n, ALLOW],
    ['mount', 'x86_64', 165, 0n, EPERM],
    ['mount', 'aarch64', 40, 0n, EPERM],
    ['umount2', 'x86_64', 166, 0n, EPERM],
    ['pivot_root', 'aarch64', 41, 0n, EPERM],
    ['fsopen', 'x86_64', 430, 0n, EPERM],
    ['setns', 'x86_64', 308, 0n, EPERM],
    ['setns', 'aarch64', 268, 0n, EPERM],
    ['ptrace', 'x86_64', 101, 0n, EPERM],
    ['ptrace', 'aarch64', 117, 0n, EPERM],
    ['process_vm_readv', 'x86_64', 310, 0n, EPERM],
    ['init_module', 'aarch64', 105, 0n, EPERM],
    ['finit_module', 'x86_64', 313, 0n, EPERM],
    ['keyctl', 'x86_64', 250, 0n, EPERM],
    ['keyctl', 'aarch64', 219, 0n, EPERM],
    ['add_key', 'aarch64', 217, 0n, EPERM],
    ['kexec_load', 'x86_64', 246, 0n, EPERM],
    ['bpf', 'x86_64', 321, 0n, EPERM],
    ['bpf', 'aarch64', 280, 0n, EPERM],
    ['open_by_handle_at', 'x86_64', 304, 0n, EPERM],
    ['perf_event_open', 'aarch64', 241, 0n, EPERM],
    ['userfaultfd', 'x86_64', 323, 0n, EPERM],
    ['reboot', 'x86_64', 169, 0n, EPERM],
    ['swapon', 'aarch64', 224, 0n, EPERM],
    ['acct', 'x86_64', 163, 0n, EPERM],
    ['clone (fork)', 'x86_64', 56, FORK_FLAGS, ALLOW],
    ['clone (thread)', 'aarch64', 220, THREAD_FLAGS, ALLOW],
    ['clone (new user namespace)', 'x86_64', 56, FORK_FLAGS | CLONE_NEWUSER, EPERM],
    ['clone (new user namespace)', 'aarch64', 220, CLONE_NEWUSER, EPERM],
    ['clone (new network namespace)', 'x86_64', 56, CLONE_NEWNET, EPERM],
    ['unshare (files)', 'x86_64', 272, 0x400n, ALLOW],
    ['unshare (new user namespace)', 'x86_64', 272, CLONE_NEWUSER, EPERM],
    ['unshare (new user namespace)', 'aarch64', 97, CLONE_NEWUSER, EPERM],
    ['unshare (new mount namespace)', 'aarch64', 97, CLONE_NEWNS, EPERM],
    // The kernel reads only the low 32 bits of the flags; a bit above them is not a namespace flag.
    ['unshare (high bits only)', 'x86_64', 272, CLONE_NEWUSER << 32n, ALLOW],
    ['clone3', 'x86_64', 435, 0n, ENOSYS],
    ['clone3', 'aarch64', 435, 0n, ENOSYS],
    ['the x32 ABI', 'x86_64', X32_SYSCALL_BIT | 0, 0n, ENOSYS],
    ['x32 mount', 'x86_64', X32_SYSCALL_BIT | 165, 0n, ENOSYS],
    // Numbers denied on one architecture are ordinary calls on the other.
    ['sendfile (mount on aarch64)', 'x86_64', 40, 0n, ALLOW],
    ['getpid (umount2 on aarch64)', 'x86_64', 39, 0n, ALLOW],
    ['nanosleep (ptrace on x86_64)', 'aarch64', 101, 0n, ALLOW],
    ['getrusage (mount on x86_64)', 'aarch64', 165, 0n, ALLOW],
  ];
  for (const [name, arch, nr, arg0, expected] of table) {
    it(`${arch} ${name} (nr ${nr}) -> ${expected === ALLOW ? 'allow' : expected === EPERM ? 'EPERM' : 'ENOSYS'}`, () => {
      assert.equal(decide(arch, nr, arg0), expected);
    });
  }

  it('denies each namespace flag alone, in clone and unshare, on both architectures', () => {
    const flags = {
      NEWNS: 0x20000,
      NEWCGROUP: 0x02000000,
      NEWUTS: 0x04000000,
      NEWIPC: 0x08000000,
      NEWUSER: 0x10000000,
      NEWPID: 0x20000000,
      NEWNET: 0x40000000,
    };
    assert.equal(
      Object.values(flags).reduce((a, b) => a | b),
      NAMESPACE_FLAGS,
      'the mask is exactly the seven CLONE_NEW* flags',
    );
    for (const arch of ['x86_64', 'aarch64'] as const) {
      for (const [call, numbers] of Object.entries(NAMESPACE_FLAG_SYSCALLS)) {
        for (const [flag, value] of Object.entries(flags)) {
          assert.equal(decide(arch, numbers[arch]!, BigInt(value)), EPERM, `${arch} ${call}(CLONE_${flag})`);
        }
      }
    }
  });

  it('kills a process that calls through another ABI (i386 on x86_64, arm32 on aarch64), whose numbers mean other calls', () => {
    const i386 = 0x40000003;
    const arm = 0x40000028;
    assert.equal(decide(i386, 1), SECCOMP_RET.killProcess, 'i386 exit');
    assert.equal(decide(i386, 310), SECCOMP_RET.killProcess, 'i386 unshare');
    assert.equal(decide(arm, 1), SECCOMP_RET.killProcess, 'arm32');
  });

  it('denies every call of its table on every architecture that has it, and nothing between them', () => {
    for (const arch of ['x86_64', 'aarch64'] as const) {
      const denied = new Set(Object.values(DENIED_SYSCALLS).map((n) => n[arch]));
      const special = new Set([...Object.values(NAMESPACE_FLAG_SYSCALLS).map((n) => n[arch]), CLONE3[arch]]);
      for (let nr = 0; nr < 600; nr++) {
        const expected = denied.has(nr) ? EPERM : CLONE3[arch] === nr ? ENOSYS : ALLOW;
        if (special.has(nr) && nr !== CLONE3[arch]) continue;
        assert.equal(decide(arch, nr), expected, `${arch} nr ${nr}`);
      }
    }
  });
});

/** `#define __NR_name number` lines of a kernel header, or null when the header is not installed. */
function headerNumbers(file: string): Map<string, number> | null {
  if (!existsSync(file)) return null;
  const numbers = new Map<string, number>();
  for (const match of readFileSync(file, 'utf8').matchAll(/^#define __NR_(\w+)\s+(\d+)\s*$/gm)) numbers.set(match[1]!, Number(match[2]));
  return numbers;
}

describe('seccomp syscall numbers against the kernel headers', () => {
  const headers = {
    x86_64: headerNumbers('/usr/include/x86_64-linux-gnu/asm/unistd_64.h') ?? headerNumbers('/usr/include/asm/unistd_64.h'),
    // aarch64 uses the generic table.
    aarch64: headerNumbers('/usr/include/asm-generic/unistd.h'),
  };
  const all: Record<string, Record<'x86_64' | 'aarch64', number | null>> = {
    ...DENIED_SYSCALLS,
    ...NAMESPACE_FLAG_SYSCALLS,
    clone3: CLONE3,
  };
  for (const arch of ['x86_64', 'aarch64'] as const) {
    const numbers = headers[arch];
    it(`match ${arch}'s table`, { skip: numbers ? false : 'kernel headers not installed (apt-get install linux-libc-dev)' }, () => {
      for (const [name, nrs] of Object.entries(all)) {
        assert.equal(nrs[arch], numbers!.get(name) ?? null, `${arch} ${name}`);
      }
    });
  }
});
