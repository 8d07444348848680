// The xenstore wire format (xen/include/public/io/xs_wire.h): a 16-byte header of four
// host-endian u32 (type, req_id, tx_id, len) and at most 4096 bytes of payload.
export const HEADER_SIZE = 16;
export const PAYLOAD_MAX = 4096;

export const MsgType = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
} as const;

const typeNames = new Map<number, string>(Object.entries(MsgType).map(([k, v]) => [v, k]));

export function msgTypeName(type: number): string {
  return typeNames.get(type) ?? `UNKNOWN(${type})`;
}

export interface Frame {
  type: number;
  reqId: number;
  txId: number;
  payload: Uint8Array;
}

// x86-64 and arm64 hosts are little-endian; the header is host-endian, so this is the one place
// that decides it.
const LE = true;

export function encodeFrame(f: Frame): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + f.payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, f.type, LE);
  dv.setUint32(4, f.reqId >>> 0, LE);
  dv.setUint32(8, f.txId >>> 0, LE);
  dv.setUint32(12, f.payload.length, LE);
  out.set(f.payload, HEADER_SIZE);
  return out;
}

/**
 * Splits a byte stream into frames. A header announcing more than PAYLOAD_MAX bytes puts the
 * reader in the `broken` state (C xenstored drops such a connection: it cannot resynchronise).
 */
export class FrameReader {
  private buf = new Uint8Array(0);
  broken = false;

  push(chunk: Uint8Array): Frame[] {
    if (this.broken) return [];
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf, 0);
    joined.set(chunk, this.buf.length);
    const frames: Frame[] = [];
    let off = 0;
    while (joined.length - off >= HEADER_SIZE) {
      const dv = new DataView(joined.buffer, joined.byteOffset + off, HEADER_SIZE);
      const len = dv.getUint32(12, LE);
      if (len > PAYLOAD_MAX) {
        this.broken = true;
        this.buf = new Uint8Array(0);
        return frames;
      }
      if (joined.length - off < HEADER_SIZE + len) break;
      frames.push({
        type: dv.getUint32(0, LE),
        reqId: dv.getUint32(4, LE),
        txId: dv.getUint32(8, LE),
        payload: joined.slice(off + HEADER_SIZE, off + HEADER_SIZE + len),
      });
      off += HEADER_SIZE + len;
    }
    this.buf = joined.slice(off);
    return frames;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** NUL-terminated strings, as xs_wire payloads carry them. */
export function strings(...parts: string[]): Uint8Array {
  return encoder.encode(parts.map((p) => `${p}\0`).join(""));
}

/** The NUL-terminated strings of a payload; bytes after the last NUL are ignored (get_strings). */
export function splitStrings(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(decoder.decode(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}

/** onearg(): exactly one string, NUL-terminated, nothing after it. */
export function oneArg(payload: Uint8Array): string | undefined {
  if (payload.length === 0 || payload.indexOf(0) !== payload.length - 1) return undefined;
  return decoder.decode(payload.subarray(0, payload.length - 1));
}

/** Payload for the trace: NULs shown as spaces, like xenstored's trace_io. */
export function printable(payload: Uint8Array, max = 200): string {
  let s = "";
  for (let i = 0; i < Math.min(payload.length, max); i++) {
    const c = payload[i]!;
    s += c === 0 ? " " : c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : ".";
  }
  return payload.length > max ? `${s}...(${payload.length} bytes)` : s;
}
