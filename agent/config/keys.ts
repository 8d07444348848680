// Where the configuration lives in xenstore (xen-stubdom-protocol.md §2-4), and the few checks
// the reader must make before following a value to the next key. The parser repeats them with
// full error reporting; sharing them keeps the two from disagreeing about what is followable.

// DOMID_FIRST_RESERVED (xen/include/public/xen.h): ids from 0x7FF0 up are not domains.
export const MAX_DOMID = 0x7fef;

/** A domid written as xenstore writes it: plain decimal, no sign, no leading zeros. */
export function domidFromText(text: string): number | null {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return null;
  const n = Number(text);
  return n <= MAX_DOMID ? n : null;
}

/** libxl's `/vm/<uuid>`: one path component under /vm, xenstore path characters only. */
export function isVmPath(text: string): boolean {
  return /^\/vm\/[A-Za-z0-9_@-]{1,128}$/.test(text);
}

/** dm-argv child names are decimal ("001", "1000"); six digits already exceeds any bound. */
export function argNumber(name: string): number | null {
  return /^[0-9]{1,6}$/.test(name) ? Number(name) : null;
}

/** vif and console device numbers: decimal, no leading zeros. */
export function devNumber(name: string): number | null {
  return /^(0|[1-9][0-9]{0,3})$/.test(name) ? Number(name) : null;
}

export const home = (domid: number) => `/local/domain/${domid}`;
export const stubKeys = (s: number) => ({
  target: `${home(s)}/target`,
  vifDir: `${home(s)}/device/vif`,
  consoleDir: `${home(s)}/device/console`,
  vbdDir: `${home(s)}/device/vbd`,
});
export const guestKeys = (g: number) => ({ vm: `${home(g)}/vm`, name: `${home(g)}/name` });
export const argvDir = (vmPath: string) => `${vmPath}/image/dm-argv`;
export const VIF_FRONT_FIELDS = ["mac", "mtu", "backend", "backend-id", "handle"] as const;
export const VIF_BACK_FIELDS = ["mac", "ip", "bridge", "mtu"] as const;
export const vifFront = (s: number, n: number) => `${home(s)}/device/vif/${n}`;
/** The only backend path the toolstack writes for vif n of S; anything else is refused. */
export const vifBackend = (backendDomid: number, s: number, n: number) =>
  `${home(backendDomid)}/backend/vif/${s}/${n}`;
export const vbdFront = (s: number, n: number) => `${home(s)}/device/vbd/${n}`;
