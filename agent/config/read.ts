// The I/O half of the configuration: read, once, every key parse.ts needs into a plain JSON
// record. It follows a value to the next key only when the value passes the same check the
// parser makes, and it bounds what it keeps, so a hostile xenstore cannot steer it elsewhere
// or make it hold more than LIMITS allow. It never throws: failures are recorded as data.
import { XenStoreError, type XenStore } from "../xenstore/types.ts";
import {
  argNumber,
  argvDir,
  devNumber,
  domidFromText,
  guestKeys,
  isVmPath,
  stubKeys,
  VIF_BACK_FIELDS,
  VIF_FRONT_FIELDS,
  vifBackend,
  vifFront,
} from "./keys.ts";
import { LIMITS, SNAPSHOT_FORMAT, type ReadOptions, type Snapshot, type SnapshotDir, type SnapshotValue } from "./types.ts";

// ignoreBOM keeps a leading U+FEFF in the string, so encoding it back gives the same bytes.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Bytes as a snapshot value: a string when valid UTF-8, else base64. */
export function encodeValue(bytes: Uint8Array): SnapshotValue {
  try {
    return utf8.decode(bytes);
  } catch {
    return { b64: Buffer.from(bytes).toString("base64") };
  }
}

/** The inverse of encodeValue for the value forms that carry bytes. */
export function valueBytes(v: string | { b64: string }): Uint8Array {
  return typeof v === "string" ? new TextEncoder().encode(v) : new Uint8Array(Buffer.from(v.b64, "base64"));
}

function failure(e: unknown): { error: string } | null {
  if (e instanceof XenStoreError) return e.errno === "ENOENT" ? null : { error: e.errno };
  return { error: `EIO (${e instanceof Error ? e.message : String(e)})` };
}

export function readSnapshot(xs: XenStore, opts: ReadOptions): Snapshot {
  const values: Record<string, SnapshotValue> = {};
  const dirs: Record<string, SnapshotDir> = {};
  const read = (path: string): string | null => {
    let v: SnapshotValue;
    try {
      const bytes = xs.read(path);
      v = bytes.length > LIMITS.maxValueBytes ? { error: "E2BIG" } : encodeValue(bytes);
    } catch (e) {
      v = failure(e);
    }
    values[path] = v;
    return typeof v === "string" ? v : null;
  };
  // Keeps one name past the bound so the parser can tell "too many" from "exactly the limit".
  const list = (path: string, max: number): readonly string[] => {
    let d: SnapshotDir;
    try {
      const names = xs.directory(path);
      d = names.length > max ? names.slice(0, max + 1) : names;
    } catch (e) {
      d = failure(e);
    }
    dirs[path] = d;
    return Array.isArray(d) && d.length <= max ? d : [];
  };
  const snapshot = (): Snapshot => ({ format: SNAPSHOT_FORMAT, domid: opts.domid, values, dirs });

  const s = opts.domid ?? domidFromText(read("domid") ?? "");
  if (s === null) return snapshot();
  const sk = stubKeys(s);
  const g = domidFromText(read(sk.target) ?? "");

  for (const name of list(sk.vifDir, LIMITS.maxDirEntries)) {
    const n = devNumber(name);
    if (n === null) continue;
    const front = vifFront(s, n);
    const got = new Map(VIF_FRONT_FIELDS.map((f) => [f, read(`${front}/${f}`)]));
    const b = domidFromText(got.get("backend-id") ?? "");
    const backend = got.get("backend");
    if (b === null || backend !== vifBackend(b, s, n)) continue;
    for (const f of VIF_BACK_FIELDS) read(`${backend}/${f}`);
  }
  list(sk.consoleDir, LIMITS.maxDirEntries);
  list(sk.vbdDir, LIMITS.maxDirEntries);

  if (g === null) return snapshot();
  const gk = guestKeys(g);
  read(gk.name);
  const vm = read(gk.vm);
  if (vm === null || !isVmPath(vm)) return snapshot();
  const argv = argvDir(vm);
  for (const name of list(argv, LIMITS.maxArgs)) {
    if (argNumber(name) !== null) read(`${argv}/${name}`);
  }
  return snapshot();
}
