// QEMU's command line = the toolstack's dm-argv plus what only the stub domain can add
// (xen-stubdom-protocol.md §3, §6): its own QMP monitors, a seccomp sandbox, and the restore
// stream's fd in place of libxl's placeholder. Pure: the caller opens the fds.

export const RESTORE_PLACEHOLDER = "$STUBDOM_RESTORE_INCOMING_ARG";

/**
 * QEMU's seccomp filter, as Qubes runs it: no spawning, no privilege changes. Debian's Xen
 * device model (qemu-system-xen) is built without seccomp and exits on `-sandbox`, so the
 * caller decides from the binary itself (hasSeccomp).
 */
export const SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/** The first fd a child gets beyond stdin/stdout/stderr (Bun.spawn's stdio[3]). */
export const FIRST_EXTRA_FD = 3;

export interface ArgvInput {
  readonly dmArgv: readonly string[];
  /** Index in dmArgv of the restore placeholder, or null when not restoring. */
  readonly restoreArgIndex: number | null;
  /** Monitor ids; each gets a listening socket the caller passes as an extra fd, in order. */
  readonly monitors: readonly string[];
  /** Whether the caller passes an fd open on /dev/hvc2 after the monitors' sockets. */
  readonly restoreFd: boolean;
  /** Whether this QEMU was built with seccomp: `-sandbox` is a fatal error in one without. */
  readonly sandbox: boolean;
}

export type ArgvResult =
  | { ok: true; argv: string[]; dropped: string[] }
  | { ok: false; reason: string };

/**
 * The monitors' listening sockets are passed as fds 3.. (QEMU's `-chardev socket,fd=`), then
 * /dev/hvc2. Binding the sockets ourselves means we connect before QEMU listens, with no
 * polling for a path to appear.
 */
export function buildQemuArgv(input: ArgvInput): ArgvResult {
  const dropped: string[] = [];
  const argv: string[] = [];
  const restoreFd = FIRST_EXTRA_FD + input.monitors.length;
  for (let i = 0; i < input.dmArgv.length; i++) {
    const a = input.dmArgv[i] as string;
    if (a === "-sandbox") {
      // Ours comes last and must be the only one: a second -sandbox could weaken it.
      dropped.push(a, input.dmArgv[i + 1] ?? "");
      i++;
      continue;
    }
    if (i === input.restoreArgIndex) {
      if (a !== RESTORE_PLACEHOLDER) return { ok: false, reason: `dm-argv[${i}] is not ${RESTORE_PLACEHOLDER}` };
      if (!input.restoreFd) return { ok: false, reason: "restoring, but no fd for /dev/hvc2" };
      argv.push(`fd:${restoreFd}`);
      continue;
    }
    if (a === RESTORE_PLACEHOLDER) return { ok: false, reason: `${RESTORE_PLACEHOLDER} at dm-argv[${i}] is not after -incoming` };
    argv.push(a);
  }
  input.monitors.forEach((id, k) => {
    argv.push("-chardev", `socket,id=${id},fd=${FIRST_EXTRA_FD + k},server=on,wait=off`);
    argv.push("-mon", `chardev=${id},mode=control`);
  });
  if (input.sandbox) argv.push("-sandbox", SANDBOX);
  return { ok: true, argv, dropped };
}

/** Whether an ELF's dynamic section names libseccomp: QEMU links it only when built with seccomp. */
export function hasSeccomp(needed: readonly string[]): boolean {
  return needed.some((lib) => lib.startsWith("libseccomp.so"));
}
