// Small readers for untrusted xenstore values: each bounds the size, checks the encoding and
// names the key in its error, and turns "absent" into undefined instead of an exception.
import { XBT_NULL, XenStoreError, type TxId, type XenStore } from "./types.ts";

export function isXsErrno(e: unknown, errno: string): e is XenStoreError {
  return e instanceof XenStoreError && e.errno === errno;
}

/** Raw bytes, or undefined when the node does not exist. Larger than `maxBytes`: E2BIG. */
export function readBytes(xs: XenStore, path: string, maxBytes: number, tx: TxId = XBT_NULL): Uint8Array | undefined {
  let value: Uint8Array;
  try {
    value = xs.read(path, tx);
  } catch (e) {
    if (isXsErrno(e, "ENOENT")) return undefined;
    throw e;
  }
  if (value.length > maxBytes) {
    throw new XenStoreError("E2BIG", "read", path, `value is ${value.length} bytes, limit ${maxBytes}`);
  }
  return value;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 text without NUL bytes, or undefined when the node does not exist. */
export function readString(xs: XenStore, path: string, maxBytes: number, tx: TxId = XBT_NULL): string | undefined {
  const bytes = readBytes(xs, path, maxBytes, tx);
  if (bytes === undefined) return undefined;
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new XenStoreError("EINVAL", "read", path, "value is not valid UTF-8");
  }
  if (text.includes("\0")) throw new XenStoreError("EINVAL", "read", path, "value contains a NUL byte");
  return text;
}

/** A decimal integer in [min, max], or undefined when the node does not exist. */
export function readInt(
  xs: XenStore,
  path: string,
  range: { min: number; max: number },
  tx: TxId = XBT_NULL,
): number | undefined {
  const text = readString(xs, path, 24, tx);
  if (text === undefined) return undefined;
  if (!/^-?\d{1,16}$/.test(text)) throw new XenStoreError("EINVAL", "read", path, `not a decimal integer: ${JSON.stringify(text)}`);
  const n = Number(text);
  if (n < range.min || n > range.max) {
    throw new XenStoreError("EINVAL", "read", path, `${n} is outside ${range.min}..${range.max}`);
  }
  return n;
}

/** Child names, or [] when the node does not exist. More than `maxEntries`: E2BIG. */
export function readDirectory(xs: XenStore, path: string, maxEntries: number, tx: TxId = XBT_NULL): string[] {
  let names: string[];
  try {
    names = xs.directory(path, tx);
  } catch (e) {
    if (isXsErrno(e, "ENOENT")) return [];
    throw e;
  }
  if (names.length > maxEntries) {
    throw new XenStoreError("E2BIG", "directory", path, `${names.length} entries, limit ${maxEntries}`);
  }
  return names;
}
