// errno names for netlink errors, without going through libc (the core stays pure).
const names: Record<number, string> = {
  1: "EPERM (Operation not permitted)",
  2: "ENOENT (No such file or directory)",
  4: "EINTR (Interrupted system call)",
  12: "ENOMEM (Cannot allocate memory)",
  16: "EBUSY (Device or resource busy)",
  17: "EEXIST (File exists)",
  19: "ENODEV (No such device)",
  22: "EINVAL (Invalid argument)",
  34: "ERANGE (Numerical result out of range)",
  90: "EMSGSIZE (Message too long)",
  95: "EOPNOTSUPP (Operation not supported)",
  97: "EAFNOSUPPORT (Address family not supported by protocol)",
  110: "ETIMEDOUT (timed out waiting for the kernel's answer)",
};

export const errnoText = (n: number) => names[n] ?? `errno ${n}`;
export const ENOENT = 2;
export const ENODEV = 19;
export const EINVAL = 22;
export const ETIMEDOUT = 110;
export const EINTR = 4;
export const EAFNOSUPPORT = 97;
/** The kernel message-like text for an NLM_F_DUMP_INTR dump (the list may be inconsistent). */
export const DUMP_INTERRUPTED = "dump interrupted by a concurrent change";
