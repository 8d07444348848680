// The confinement policy as data: the seccomp program's verdict for each system call (run by
// the interpreter of agent/bpf/asm.ts; test/init/confine.test.ts runs it in the real kernel),
// and the Landlock rules derived from dm-argv.
import { describe, expect, test } from "vitest";
import { runBpf } from "../../agent/bpf/asm.ts";
import { argvPaths, confinePolicy, EXEC_FD, FS, handledFs, MAX_ARGV_RULES, policyText } from "../../agent/qemu/confine.ts";
import {
  CLONE_THREAD_FLAGS, DENIED, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS, seccompData, seccompProgram,
  SYS_CLONE, SYS_EXECVEAT, SYS_SCHED_SETSCHEDULER,
} from "../../agent/qemu/seccomp.ts";

const prog = seccompProgram(EXEC_FD);
const verdict = (nr: number, args: number[] = [], arch?: number) => runBpf(prog, seccompData(nr, args, arch), { littleEndian: true });

describe("seccomp program", () => {
  test("every denied call gets its verdict; ordinary calls are allowed", () => {
    const expected = { kill: SECCOMP_RET_KILL_PROCESS, eperm: SECCOMP_RET_ERRNO | 1, enosys: SECCOMP_RET_ERRNO | 38 };
    for (const [name, d] of Object.entries(DENIED)) expect(verdict(d.nr), name).toBe(expected[d.verdict]);
    for (const nr of [0, 1, 2, 3, 9, 16, 232, 257]) expect(verdict(nr), `nr ${nr}`).toBe(SECCOMP_RET_ALLOW);
  });
  test("every number 0..1023 gets the verdict of the lists (the binary search misses none)", () => {
    const expected = { kill: SECCOMP_RET_KILL_PROCESS, eperm: SECCOMP_RET_ERRNO | 1, enosys: SECCOMP_RET_ERRNO | 38 };
    const byNr = new Map(Object.values(DENIED).map((d) => [d.nr, expected[d.verdict]]));
    for (let nr = 0; nr < 1024; nr++) {
      if (nr === SYS_CLONE || nr === SYS_EXECVEAT || nr === SYS_SCHED_SETSCHEDULER) continue;
      expect(verdict(nr), `nr ${nr}`).toBe(byNr.get(nr) ?? SECCOMP_RET_ALLOW);
    }
  });
  test("the four groups of QEMU's -sandbox are all there", () => {
    const groups = new Set(Object.values(DENIED).map((d) => d.group));
    for (const g of ["default", "obsolete", "elevateprivileges", "spawn", "resourcecontrol"]) expect(groups.has(g), g).toBe(true);
  });
  test("clone: a thread is allowed; a process, a vfork or a new namespace is not", () => {
    expect(verdict(SYS_CLONE, [CLONE_THREAD_FLAGS])).toBe(SECCOMP_RET_ALLOW);
    expect(verdict(SYS_CLONE, [0x11 /* SIGCHLD: fork */])).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(verdict(SYS_CLONE, [0x4000 | 0x100 | 0x11 /* posix_spawn */])).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(verdict(SYS_CLONE, [CLONE_THREAD_FLAGS | 0x40000000 /* NEWNET */])).toBe(SECCOMP_RET_KILL_PROCESS);
  });
  test("execveat only of the exec fd with AT_EMPTY_PATH", () => {
    expect(verdict(SYS_EXECVEAT, [EXEC_FD, 0, 0, 0, 0x1000])).toBe(SECCOMP_RET_ALLOW);
    expect(verdict(SYS_EXECVEAT, [EXEC_FD, 0, 0, 0, 0])).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(verdict(SYS_EXECVEAT, [-100 /* AT_FDCWD */, 0, 0, 0, 0x1000])).toBe(SECCOMP_RET_KILL_PROCESS);
  });
  test("sched_setscheduler: SCHED_IDLE only", () => {
    expect(verdict(SYS_SCHED_SETSCHEDULER, [0, 5])).toBe(SECCOMP_RET_ALLOW);
    expect(verdict(SYS_SCHED_SETSCHEDULER, [0, 1 /* FIFO */])).toBe(SECCOMP_RET_ERRNO | 1);
  });
  test("other ABIs are killed: i386 numbers, x32", () => {
    expect(verdict(0, [], 0x40000003 /* AUDIT_ARCH_I386 */)).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(verdict(0x40000000 + 1)).toBe(SECCOMP_RET_KILL_PROCESS);
  });
});

describe("Landlock rules", () => {
  const argv = [
    "-xen-domid", "7", "-drive", "file=/dev/xvda,if=ide,index=0,media=disk,format=host_device",
    "-drive", "if=none,readonly=on,id=ide-5632,file=/dev/xvdc", "-serial", "/dev/hvc3", "-name", "guest",
  ];
  const base = { argv, binary: "/usr/libexec/xen-qemu-system-i386", interpreter: "/lib64/ld-linux-x86-64.so.2", runDir: "/tmp" };
  test("dm-argv's devices, read-only when the argument says so", () => {
    expect(argvPaths(argv)).toEqual([
      { path: "/dev/xvda", readonly: false },
      { path: "/dev/xvdc", readonly: true },
      { path: "/dev/hvc3", readonly: false },
    ]);
    const rules = new Map(confinePolicy({ ...base, landlockAbi: 6 }).rules.map((r) => [r.path, r.access]));
    expect(rules.get("/dev/xvda")! & FS.WRITE_FILE).toBeTruthy();
    expect(rules.get("/dev/xvdc")! & FS.WRITE_FILE).toBe(0);
    expect(rules.get("/dev/hvc3")! & FS.IOCTL_DEV).toBeTruthy();
    expect(rules.get("/usr")! & (FS.WRITE_FILE | FS.EXECUTE)).toBe(0);
    expect(rules.get(base.binary)! & FS.EXECUTE).toBeTruthy();
  });
  test("PCI passthrough: config space writable under /sys/devices only, /dev/mem a device; the rest of /sys read-only", () => {
    const rules = new Map(confinePolicy({ ...base, landlockAbi: 6 }).rules.map((r) => [r.path, r.access]));
    expect(rules.get("/sys/devices")! & FS.WRITE_FILE).toBeTruthy();
    expect(rules.get("/sys/devices")! & (FS.EXECUTE | FS.MAKE_REG | FS.REMOVE_FILE)).toBe(0);
    expect(rules.get("/sys")! & FS.WRITE_FILE).toBe(0);
    expect(rules.get("/dev/mem")! & FS.WRITE_FILE).toBeTruthy();
    expect(rules.get("/dev/mem")! & FS.EXECUTE).toBe(0);
  });
  test("rights are cut to what the kernel's ABI knows; no ABI, no rules", () => {
    for (const abi of [1, 2, 3, 4, 5, 6]) {
      for (const r of confinePolicy({ ...base, landlockAbi: abi }).rules) expect(r.access & ~handledFs(abi), `${abi} ${r.path}`).toBe(0);
    }
    expect(handledFs(1)).toBe((1 << 13) - 1);
    expect(confinePolicy({ ...base, landlockAbi: 0 }).rules).toEqual([]);
  });
  test("dm-argv cannot add unbounded or odd paths", () => {
    const many = Array.from({ length: MAX_ARGV_RULES + 5 }, (_, i) => `/dev/xvd${i}`);
    const p = confinePolicy({ ...base, argv: [...many, "-serial", "/dev/../etc/shadow", "-x", "/a\nallow 65535 /"], landlockAbi: 6 });
    expect(p.skipped).toContain("/dev/../etc/shadow");
    expect(p.skipped).toContain("/a\nallow 65535 /");
    expect(p.skipped.length).toBe(5 + 2);
    expect(policyText(p).split("\n").filter((l) => l === "allow 65535 /")).toEqual([]);
  });
  test("the text ends with the filter and an end line", () => {
    const t = policyText(confinePolicy({ ...base, landlockAbi: 6 }));
    expect(t.startsWith("stubdom-confine 1\nlandlock 6 ")).toBe(true);
    expect(t).toMatch(new RegExp(`\\nexec ${EXEC_FD}\\nseccomp ${prog.length}\\n`));
    expect(t.endsWith("\nend\n")).toBe(true);
  });
});
