// QEMU's seccomp filter, ours: what QEMU's own `-sandbox on,obsolete=deny,elevateprivileges=deny,
// spawn=deny,resourcecontrol=deny` denies (system/qemu-seccomp.c, the groups as Qubes runs
// them), written as a classic BPF program for x86_64 so that it works with a QEMU built
// without libseccomp, as Debian's Xen device model is. stubdom-confine (agent/stage0/confine.c)
// installs it between fork and exec. Deny-list: every other system call is allowed.
import { assemble, JEQ_K, JGE_K, LD_W_ABS, RET_K, ALU_AND_K, type BpfInsn, type Line } from "../bpf/asm.ts";

export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;
const ENOSYS = 38;
const AT_EMPTY_PATH = 0x1000;
const SCHED_IDLE = 5;

/** struct seccomp_data: nr, arch, instruction_pointer, then args[6] of 8 bytes (low word first). */
const NR = 0;
const ARCH = 4;
const arg = (i: number) => 16 + 8 * i;

export type Verdict = "kill" | "eperm" | "enosys";

/** x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl); the groups of qemu-seccomp.c. */
export const DENIED: Readonly<Record<string, { nr: number; group: string; verdict: Verdict }>> = Object.freeze({
  // QEMU's default set, plus the module, kexec, mount-API and tracing calls it does not list.
  reboot: { nr: 169, group: "default", verdict: "kill" },
  swapon: { nr: 167, group: "default", verdict: "kill" },
  swapoff: { nr: 168, group: "default", verdict: "kill" },
  syslog: { nr: 103, group: "default", verdict: "kill" },
  mount: { nr: 165, group: "default", verdict: "kill" },
  umount2: { nr: 166, group: "default", verdict: "kill" },
  kexec_load: { nr: 246, group: "default", verdict: "kill" },
  afs_syscall: { nr: 183, group: "default", verdict: "kill" },
  getpmsg: { nr: 181, group: "default", verdict: "kill" },
  putpmsg: { nr: 182, group: "default", verdict: "kill" },
  security: { nr: 185, group: "default", verdict: "kill" },
  tuxcall: { nr: 184, group: "default", verdict: "kill" },
  vserver: { nr: 236, group: "default", verdict: "kill" },
  kexec_file_load: { nr: 320, group: "default", verdict: "kill" },
  init_module: { nr: 175, group: "default", verdict: "kill" },
  finit_module: { nr: 313, group: "default", verdict: "kill" },
  delete_module: { nr: 176, group: "default", verdict: "kill" },
  pivot_root: { nr: 155, group: "default", verdict: "kill" },
  chroot: { nr: 161, group: "default", verdict: "kill" },
  ptrace: { nr: 101, group: "default", verdict: "kill" },
  process_vm_writev: { nr: 311, group: "default", verdict: "kill" },
  open_by_handle_at: { nr: 304, group: "default", verdict: "kill" },
  open_tree: { nr: 428, group: "default", verdict: "kill" },
  move_mount: { nr: 429, group: "default", verdict: "kill" },
  fsopen: { nr: 430, group: "default", verdict: "kill" },
  fsconfig: { nr: 431, group: "default", verdict: "kill" },
  fsmount: { nr: 432, group: "default", verdict: "kill" },
  fspick: { nr: 433, group: "default", verdict: "kill" },
  mount_setattr: { nr: 442, group: "default", verdict: "kill" },
  // obsolete=deny (readdir, bdflush, sgetmask and ssetmask do not exist on x86_64)
  _sysctl: { nr: 156, group: "obsolete", verdict: "kill" },
  create_module: { nr: 174, group: "obsolete", verdict: "kill" },
  get_kernel_syms: { nr: 177, group: "obsolete", verdict: "kill" },
  query_module: { nr: 178, group: "obsolete", verdict: "kill" },
  sysfs: { nr: 139, group: "obsolete", verdict: "kill" },
  uselib: { nr: 134, group: "obsolete", verdict: "kill" },
  ustat: { nr: 136, group: "obsolete", verdict: "kill" },
  // elevateprivileges=deny
  setuid: { nr: 105, group: "elevateprivileges", verdict: "kill" },
  setgid: { nr: 106, group: "elevateprivileges", verdict: "kill" },
  setpgid: { nr: 109, group: "elevateprivileges", verdict: "kill" },
  setsid: { nr: 112, group: "elevateprivileges", verdict: "kill" },
  setreuid: { nr: 113, group: "elevateprivileges", verdict: "kill" },
  setregid: { nr: 114, group: "elevateprivileges", verdict: "kill" },
  setresuid: { nr: 117, group: "elevateprivileges", verdict: "kill" },
  setresgid: { nr: 119, group: "elevateprivileges", verdict: "kill" },
  setfsuid: { nr: 122, group: "elevateprivileges", verdict: "kill" },
  setfsgid: { nr: 123, group: "elevateprivileges", verdict: "kill" },
  // spawn=deny (clone and execveat have argument checks below)
  fork: { nr: 57, group: "spawn", verdict: "kill" },
  vfork: { nr: 58, group: "spawn", verdict: "kill" },
  execve: { nr: 59, group: "spawn", verdict: "kill" },
  setns: { nr: 308, group: "spawn", verdict: "kill" },
  unshare: { nr: 272, group: "spawn", verdict: "kill" },
  // glibc's pthread_create falls back to clone() when clone3 says ENOSYS, as under QEMU's filter.
  clone3: { nr: 435, group: "spawn", verdict: "enosys" },
  // resourcecontrol=deny (sched_setscheduler: all but SCHED_IDLE, below)
  setpriority: { nr: 141, group: "resourcecontrol", verdict: "eperm" },
  sched_setparam: { nr: 142, group: "resourcecontrol", verdict: "eperm" },
  sched_setaffinity: { nr: 203, group: "resourcecontrol", verdict: "eperm" },
});

export const SYS_CLONE = 56;
export const SYS_EXECVEAT = 322;
export const SYS_SCHED_SETSCHEDULER = 144;

/** The flags pthread_create passes to clone: a clone missing one of them is a new process. */
export const CLONE_THREAD_FLAGS =
  0x00000100 /* VM */ | 0x00000200 /* FS */ | 0x00000400 /* FILES */ | 0x00000800 /* SIGHAND */ |
  0x00010000 /* THREAD */ | 0x00040000 /* SYSVSEM */ | 0x00080000 /* SETTLS */ |
  0x00100000 /* PARENT_SETTID */ | 0x00200000 /* CHILD_CLEARTID */;
/** Flags no thread of QEMU needs: a new process in disguise, tracing, or new namespaces. */
export const CLONE_FORBIDDEN_FLAGS =
  0x00001000 /* PIDFD */ | 0x00002000 /* PTRACE */ | 0x00004000 /* VFORK */ | 0x00008000 /* PARENT */ |
  0x00020000 /* NEWNS */ | 0x00800000 /* UNTRACED */ | 0x02000000 /* NEWCGROUP */ | 0x04000000 /* NEWUTS */ |
  0x08000000 /* NEWIPC */ | 0x10000000 /* NEWUSER */ | 0x20000000 /* NEWPID */ | 0x40000000 /* NEWNET */ |
  0x80000000 /* IO */;

const RET: Record<Verdict | "allow", number> = {
  kill: SECCOMP_RET_KILL_PROCESS,
  eperm: SECCOMP_RET_ERRNO | EPERM,
  enosys: SECCOMP_RET_ERRNO | ENOSYS,
  allow: SECCOMP_RET_ALLOW,
};

/**
 * The filter. `execFd`: the one execveat it lets through, `execveat(execFd, "", …,
 * AT_EMPTY_PATH)`, by which stubdom-confine starts QEMU with the filter already in place.
 * Only the low 32 bits of each argument are compared: the kernel reads these as int.
 */
export function seccompProgram(execFd: number): BpfInsn[] {
  const L: Line[] = [];
  // Another ABI's numbers mean other calls (i386 via int 0x80, x32): nothing of those is allowed.
  L.push({ op: LD_W_ABS, k: ARCH }, { op: JEQ_K, k: AUDIT_ARCH_X86_64, jt: "x86_64", jf: "kill" }, { label: "x86_64" });
  L.push({ op: LD_W_ABS, k: NR }, { op: JGE_K, k: X32_SYSCALL_BIT, jt: "kill", jf: "native" }, { label: "native" });
  const targets = new Map<number, string>(Object.values(DENIED).map((d) => [d.nr, d.verdict]));
  targets.set(SYS_CLONE, "clone").set(SYS_EXECVEAT, "execveat").set(SYS_SCHED_SETSCHEDULER, "setscheduler");
  decide(L, [...targets].sort(([a], [b]) => a - b));

  L.push({ label: "clone" }, { op: LD_W_ABS, k: arg(0) });
  L.push({ op: ALU_AND_K, k: CLONE_THREAD_FLAGS | CLONE_FORBIDDEN_FLAGS });
  L.push({ op: JEQ_K, k: CLONE_THREAD_FLAGS, jt: "allow", jf: "kill" });

  L.push({ label: "execveat" }, { op: LD_W_ABS, k: arg(0) });
  L.push({ op: JEQ_K, k: execFd, jt: "execFd", jf: "kill" }, { label: "execFd" });
  L.push({ op: LD_W_ABS, k: arg(4) });
  L.push({ op: JEQ_K, k: AT_EMPTY_PATH, jt: "allow", jf: "kill" });

  L.push({ label: "setscheduler" }, { op: LD_W_ABS, k: arg(1) });
  L.push({ op: JEQ_K, k: SCHED_IDLE, jt: "allow", jf: "eperm" });

  for (const v of ["kill", "eperm", "enosys", "allow"] as const) L.push({ label: v }, { op: RET_K, k: RET[v] });
  return assemble(L);
}

/** Below this many numbers a range is tested one by one; above, it is halved. */
const LINEAR = 4;

/**
 * The dispatch on the system call number (in A) as a binary search over the sorted numbers
 * with a verdict: ~log2(n) + LINEAR comparisons for any call, where a list of JEQs costs every
 * allowed call all n of them. It runs on each system call QEMU makes, and the stub kernel has
 * no BPF JIT. Every number not listed reaches "allow".
 */
function decide(L: Line[], sorted: Array<[number, string]>): void {
  let n = 0;
  const node = (lo: number, hi: number): void => {
    if (hi - lo <= LINEAR) {
      for (let i = lo; i < hi; i++) {
        const [nr, target] = sorted[i]!;
        const fall = `d${n++}`;
        L.push({ op: JEQ_K, k: nr, jt: target, jf: fall }, { label: fall });
      }
      L.push({ op: RET_K, k: RET.allow });
      return;
    }
    const mid = (lo + hi) >> 1;
    const upper = `d${n++}`;
    L.push({ op: JGE_K, k: sorted[mid]![0], jt: upper, jf: `d${n}` }, { label: `d${n++}` });
    node(lo, mid);
    L.push({ label: upper });
    node(mid, hi);
  };
  node(0, sorted.length);
}

/** struct seccomp_data for the interpreter (agent/bpf/asm.ts runBpf with littleEndian). */
export function seccompData(nr: number, args: readonly number[] = [], arch = AUDIT_ARCH_X86_64): Uint8Array {
  const b = new Uint8Array(64);
  const dv = new DataView(b.buffer);
  dv.setUint32(NR, nr >>> 0, true);
  dv.setUint32(ARCH, arch >>> 0, true);
  args.forEach((v, i) => dv.setUint32(arg(i), v >>> 0, true));
  return b;
}
