// libc through bun:ffi: the one place the agent reaches the kernel directly. Symbols are
// resolved lazily so that importing this module never fails on a machine without them.
// Other ffi/ modules may dlopen libc.so.6 for their own symbols; errno is read through
// errno() below, right after the failing call (bun-as-pid1.md: never dlsym `errno`).
// Every wrapper here is non-blocking by construction (bun-as-pid1.md: a blocking FFI call
// freezes timers, signals and child exits): no read() of a blocking fd, no waitid without
// WNOHANG.
import { dlopen, FFIType, ptr, read, type FFIFunction, type Library } from "bun:ffi";

const LIBC = "libc.so.6";
const { i32, i64, u32, u64, ptr: p, cstring, void: none } = FFIType;

const symbols = {
  __errno_location: { args: [], returns: p },
  strerror: { args: [i32], returns: cstring },
  mount: { args: [p, p, p, u64, p], returns: i32 },
  umount2: { args: [p, i32], returns: i32 },
  reboot: { args: [i32], returns: i32 },
  sethostname: { args: [p, u64], returns: i32 },
  sync: { args: [], returns: none },
  prctl: { args: [i32, u64, u64, u64, u64], returns: i32 },
  kill: { args: [i32, i32], returns: i32 },
  waitid: { args: [i32, i32, p, i32], returns: i32 },
  open: { args: [p, i32, u32], returns: i32 },
  close: { args: [i32], returns: i32 },
  write: { args: [i32, p, u64], returns: i64 },
  read: { args: [i32, p, u64], returns: i64 },
  fcntl: { args: [i32, i32, i64], returns: i32 },
  dup3: { args: [i32, i32, i32], returns: i32 },
  tcgetattr: { args: [i32, p], returns: i32 },
  tcsetattr: { args: [i32, i32, p], returns: i32 },
  cfmakeraw: { args: [p], returns: none },
  socket: { args: [i32, i32, i32], returns: i32 },
  socketpair: { args: [i32, i32, i32, p], returns: i32 },
  connect: { args: [i32, p, u32], returns: i32 },
  bind: { args: [i32, p, u32], returns: i32 },
  listen: { args: [i32, i32], returns: i32 },
  shutdown: { args: [i32, i32], returns: i32 },
  sendmsg: { args: [i32, p, i32], returns: i64 },
  klogctl: { args: [i32, p, i32], returns: i32 },
  ioctl: { args: [i32, u64, p], returns: i32 },
  poll: { args: [p, u64, i32], returns: i32 },
  syscall: { args: [i64, i64, p, i64], returns: i64 },
} as const;

/**
 * A library opened on first use, so importing an ffi/ module never fails on a machine without
 * it; a failure to load names the file, the loader's reason and, if given, the Debian package.
 */
export function lazyLibrary<S extends Record<string, FFIFunction>>(
  file: string,
  syms: S,
  debianPackage?: string,
): () => Library<S>["symbols"] {
  let lib: Library<S> | undefined;
  return () => {
    if (!lib) {
      try {
        lib = dlopen(file, syms);
      } catch (e) {
        throw new Error(`cannot load ${file}: ${(e as Error).message}${debianPackage ? ` (Debian package ${debianPackage})` : ""}`);
      }
    }
    return lib.symbols;
  };
}

export const libc = lazyLibrary(LIBC, symbols);

/** The calling thread's errno. Call immediately after the failing FFI call. */
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : read.i32(p, 0);
}

const names: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 7: "E2BIG", 9: "EBADF",
  10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 16: "EBUSY", 17: "EEXIST",
  19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 24: "EMFILE", 25: "ENOTTY", 28: "ENOSPC",
  30: "EROFS", 32: "EPIPE", 34: "ERANGE", 38: "ENOSYS", 39: "ENOTEMPTY", 61: "ENODATA",
  71: "EPROTO", 90: "EMSGSIZE", 93: "EPROTONOSUPPORT", 95: "EOPNOTSUPP", 98: "EADDRINUSE",
  104: "ECONNRESET", 105: "ENOBUFS", 106: "EISCONN", 110: "ETIMEDOUT", 111: "ECONNREFUSED",
};

export function errnoName(n: number): string {
  return names[n] ?? `errno ${n}`;
}

/** An error from a libc call: `mount /proc: EBUSY (Device or resource busy)`. */
export class SysError extends Error {
  constructor(readonly call: string, readonly errno: number, readonly subject = "") {
    super(`${call}${subject ? ` ${subject}` : ""}: ${errnoName(errno)} (${libc().strerror(errno)})`);
    this.name = "SysError";
  }
}

const enc = new TextEncoder();
/** A NUL-terminated copy; the caller keeps it referenced for the duration of the call. */
export function cstr(s: string): Uint8Array {
  return enc.encode(`${s}\0`);
}
function orNull(s: string | undefined): Uint8Array | null {
  return s === undefined ? null : cstr(s);
}
/** rc, or a SysError with errno when rc < 0: for the ffi/ modules' own symbols too. */
export function check(call: string, rc: number | bigint, subject = ""): number {
  const n = Number(rc);
  if (n < 0) throw new SysError(call, errno(), subject);
  return n;
}

export const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, REMOUNT: 32, BIND: 4096,
} as const;

export function mount(source: string, target: string, fstype: string | undefined, flags: number, data?: string): void {
  check("mount", libc().mount(cstr(source), cstr(target), orNull(fstype), BigInt(flags), orNull(data)), target);
}

// <sys/reboot.h> / <linux/reboot.h>
export const RB_POWER_OFF = 0x4321fedc;
/** LINUX_REBOOT_CMD_CAD_OFF: Ctrl-Alt-Del then sends SIGINT to PID 1. */
export const RB_DISABLE_CAD = 0;

export function reboot(cmd: number): void {
  check("reboot", libc().reboot(cmd));
}

export function sethostname(name: string): void {
  const b = enc.encode(name);
  check("sethostname", libc().sethostname(b, BigInt(b.length)), name);
}

export function sync(): void {
  libc().sync();
}

export const PR_SET_CHILD_SUBREAPER = 36;
export function prctl(option: number, arg2: number): void {
  check("prctl", libc().prctl(option, BigInt(arg2), 0n, 0n, 0n), String(option));
}

export function kill(pid: number, sig: number): void {
  check("kill", libc().kill(pid, sig), String(pid));
}

const P_ALL = 0, P_PID = 1;
const WNOHANG = 1, WEXITED = 4, WNOWAIT = 0x01000000;
export interface ChildExit {
  pid: number;
  /** CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3 */
  code: number;
  status: number;
}

function waitidOnce(idtype: number, id: number, options: number): ChildExit | null {
  // siginfo_t is 128 bytes; for SIGCHLD si_pid is at 16, si_status at 24 (x86-64).
  const si = new Uint8Array(128);
  const rc = libc().waitid(idtype, id, si, options | WEXITED | WNOHANG);
  if (rc < 0) {
    const e = errno();
    if (e === 10) return null; // ECHILD: no children at all
    throw new SysError("waitid", e);
  }
  const dv = new DataView(si.buffer);
  const pid = dv.getInt32(16, true);
  return pid === 0 ? null : { pid, code: dv.getInt32(8, true), status: dv.getInt32(24, true) };
}

/** The first exited child, left waitable (WNOWAIT), or null. */
export function peekExitedChild(): ChildExit | null {
  return waitidOnce(P_ALL, 0, WNOWAIT);
}

/** Reap one specific exited child, or null if it has not exited. */
export function reapChild(pid: number): ChildExit | null {
  return waitidOnce(P_PID, pid, 0);
}

export const O = {
  RDONLY: 0, WRONLY: 1, RDWR: 2, NOCTTY: 0o400, NONBLOCK: 0o4000, CLOEXEC: 0o2000000,
} as const;

export function open(path: string, flags: number, mode = 0): number {
  return check("open", libc().open(cstr(path), flags, mode), path);
}

export function close(fd: number): void {
  check("close", libc().close(fd), String(fd));
}

export function write(fd: number, data: Uint8Array): number {
  return check("write", libc().write(fd, data, BigInt(data.length)), String(fd));
}

const EINTR = 4, EAGAIN = 11;
/** Up to `max` bytes from a non-blocking fd; null when nothing is there (EAGAIN). */
export function readNow(fd: number, max: number): Uint8Array | null {
  const buf = new Uint8Array(max);
  const n = Number(libc().read(fd, buf, BigInt(max)));
  if (n >= 0) return buf.subarray(0, n);
  const e = errno();
  if (e === EAGAIN) return null;
  throw new SysError("read", e, String(fd));
}

/** Writes what a non-blocking fd takes now: the byte count, 0 when it takes nothing (EAGAIN). */
export function writeNow(fd: number, data: Uint8Array): number {
  const n = Number(libc().write(fd, data, BigInt(data.length)));
  if (n >= 0) return n;
  const e = errno();
  if (e === EAGAIN || e === EINTR) return 0;
  throw new SysError("write", e, String(fd));
}

const F_DUPFD_CLOEXEC = 1030;
/** A new fd (close-on-exec, lowest free number ≥ 3) on the same open file, owned by the caller. */
export function dupCloexec(fd: number): number {
  return check("fcntl F_DUPFD_CLOEXEC", libc().fcntl(fd, F_DUPFD_CLOEXEC, 3n), String(fd));
}

/** Makes `target` a close-on-exec duplicate of `fd` (dup3), closing what `target` was. */
export function dup2Cloexec(fd: number, target: number): void {
  check("dup3", libc().dup3(fd, target, O.CLOEXEC), `${fd} -> ${target}`);
}

const F_GETFL = 3, F_SETFL = 4;
export function setNonBlocking(fd: number, on: boolean): void {
  const fl = check("fcntl", libc().fcntl(fd, F_GETFL, 0n), String(fd));
  check("fcntl", libc().fcntl(fd, F_SETFL, BigInt(on ? fl | O.NONBLOCK : fl & ~O.NONBLOCK)), String(fd));
}

/** Raw mode (cfmakeraw: no echo, no line discipline) so binary state streams pass unchanged. */
export function makeRaw(fd: number, subject: string): void {
  const t = new Uint8Array(64); // struct termios is 60 bytes in glibc
  check("tcgetattr", libc().tcgetattr(fd, t), subject);
  libc().cfmakeraw(t);
  check("tcsetattr", libc().tcsetattr(fd, 0 /* TCSANOW */, t), subject);
}

const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;

/** A connected pair of UNIX stream sockets. */
export function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  check("socketpair", libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  return [fds[0]!, fds[1]!];
}

function sockaddrUn(path: string): Uint8Array {
  const name = enc.encode(path);
  if (name.length >= 108) throw new Error(`socket path too long (${name.length} bytes): ${path}`);
  const sa = new Uint8Array(2 + name.length + 1);
  new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
  sa.set(name, 2);
  return sa;
}

function unixSocket(path: string, flags: number, op: "connect" | "bind"): number {
  const sa = sockaddrUn(path);
  const fd = check("socket", libc().socket(AF_UNIX, SOCK_STREAM | flags, 0), path);
  const rc = op === "connect" ? libc().connect(fd, sa, sa.length) : libc().bind(fd, sa, sa.length);
  if (rc < 0) {
    const e = errno();
    libc().close(fd);
    throw new SysError(op, e, path);
  }
  return fd;
}

/** A connected, non-blocking, close-on-exec UNIX stream socket. */
export function connectUnix(path: string): number {
  return unixSocket(path, SOCK_NONBLOCK | SOCK_CLOEXEC, "connect");
}

/**
 * A listening UNIX socket meant to be inherited by a child (no CLOEXEC, blocking, as the
 * child expects). Binding it before the child starts lets the parent connect at once: the
 * connection waits in the backlog until the child accepts, so nobody polls for the path.
 */
export function listenUnixForChild(path: string, backlog = 4): number {
  const fd = unixSocket(path, 0, "bind");
  if (libc().listen(fd, backlog) < 0) {
    const e = errno();
    libc().close(fd);
    throw new SysError("listen", e, path);
  }
  return fd;
}

/** shutdown(SHUT_RDWR): the peer sees the close and our pending reads end, fd still open. */
export function shutdownSocket(fd: number): void {
  check("shutdown", libc().shutdown(fd, 2), String(fd));
}

const MSG_NOSIGNAL = 0x4000, SOL_SOCKET = 1, SCM_RIGHTS = 1;

/** sendmsg(2) of `data`, with `fds` attached as SCM_RIGHTS when given. Returns bytes sent. */
export function sendWithFds(sock: number, data: Uint8Array, fds: number[] = []): number {
  const iov = new Uint8Array(16);
  const iv = new DataView(iov.buffer);
  iv.setBigUint64(0, BigInt(ptr(data)), true);
  iv.setBigUint64(8, BigInt(data.length), true);
  const msg = new Uint8Array(56);
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(16, BigInt(ptr(iov)), true);
  mv.setBigUint64(24, 1n, true);
  let control: Uint8Array | undefined;
  if (fds.length > 0) {
    // CMSG_SPACE(4n) rounds the 16-byte header plus the fds to 8 bytes.
    const len = 16 + 4 * fds.length;
    control = new Uint8Array((len + 7) & ~7);
    const cv = new DataView(control.buffer);
    cv.setBigUint64(0, BigInt(len), true);
    cv.setInt32(8, SOL_SOCKET, true);
    cv.setInt32(12, SCM_RIGHTS, true);
    fds.forEach((fd, i) => cv.setInt32(16 + 4 * i, fd, true));
    mv.setBigUint64(32, BigInt(ptr(control)), true);
    mv.setBigUint64(40, BigInt(control.length), true);
  }
  const n = check("sendmsg", libc().sendmsg(sock, msg, MSG_NOSIGNAL), String(sock));
  void control; // referenced until here so the GC cannot move it during the call
  return n;
}

const SYS_finit_module = 313;
/** The kernel decompresses the module itself (.ko.xz/.ko.zst, CONFIG_MODULE_DECOMPRESS). */
export const MODULE_INIT_COMPRESSED_FILE = 4;
/** Load a kernel module from an open file. Throws SysError (EEXIST when already loaded). */
export function finitModule(fd: number, params: string, subject: string, flags = 0): void {
  check("finit_module", libc().syscall(BigInt(SYS_finit_module), BigInt(fd), cstr(params), BigInt(flags)), subject);
}

const SYSLOG_ACTION_CLEAR = 5;
/** Empty the kernel ring buffer, so KASLR hints in early messages cannot be read later. */
export function klogClear(): void {
  check("klogctl", libc().klogctl(SYSLOG_ACTION_CLEAR, null, 0));
}

const AF_INET = 2, SOCK_DGRAM = 2, SIOCGIFFLAGS = 0x8913, SIOCSIFFLAGS = 0x8914, IFF_UP = 1;

/** `ip link set IF up` through the old ifreq ioctls: no netlink needed for loopback. */
export function linkUp(ifname: string): void {
  const name = enc.encode(ifname);
  if (name.length >= 16) throw new Error(`interface name too long: ${ifname}`);
  const fd = check("socket", libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ifname);
  try {
    const ifr = new Uint8Array(40); // struct ifreq: name[16], then ifr_flags (short)
    ifr.set(name, 0);
    check("ioctl SIOCGIFFLAGS", libc().ioctl(fd, BigInt(SIOCGIFFLAGS), ifr), ifname);
    const dv = new DataView(ifr.buffer);
    dv.setInt16(16, dv.getInt16(16, true) | IFF_UP, true);
    check("ioctl SIOCSIFFLAGS", libc().ioctl(fd, BigInt(SIOCSIFFLAGS), ifr), ifname);
  } finally {
    libc().close(fd);
  }
}

export const POLLIN = 0x1, POLLHUP = 0x10;

/** poll(2) of one fd with a zero timeout: the revents now, never waiting. */
export function pollNow(fd: number, events = POLLIN): number {
  return pollFor(fd, 0, events);
}

/** poll(2) of one fd, blocking the calling thread up to `timeoutMs`: the revents (0 on timeout). */
export function pollFor(fd: number, timeoutMs: number, events = POLLIN): number {
  const pfd = new Uint8Array(8); // struct pollfd {int fd; short events; short revents;}
  const dv = new DataView(pfd.buffer);
  dv.setInt32(0, fd, true);
  dv.setInt16(4, events, true);
  const rc = Number(libc().poll(pfd, 1n, timeoutMs));
  if (rc < 0 && errno() === EINTR) return 0; // a signal: the caller's loop looks again
  check("poll", rc, String(fd));
  return dv.getInt16(6, true);
}

const SYS_landlock_create_ruleset = 444;
const LANDLOCK_CREATE_RULESET_VERSION = 1;
/** The kernel's Landlock ABI version; 0 when it has none (not built in, or left out of `lsm=`). */
export function landlockAbi(): number {
  const v = Number(libc().syscall(BigInt(SYS_landlock_create_ruleset), 0n, null, BigInt(LANDLOCK_CREATE_RULESET_VERSION)));
  return v > 0 ? v : 0;
}
