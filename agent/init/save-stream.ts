// The save stream (issue 18; xen-stubdom-protocol.md §5, §6). libxl saves a guest's device
// model by QMP `stop`, then `xen-save-devices-state filename=/dev/fdset/1`, sent through our
// relay, and later reads /var/lib/xen/qemu-save.<guest>, which dom0's console backend fills with
// what the stub domain writes to console 1. QEMU opens /dev/fdset/1 with O_TRUNC and so
// ftruncates the descriptor it finds there: on /dev/hvc1 that fails (EINVAL, "Unable to open
// /dev/fdset/1: Invalid argument", seen on nested Xen). So fdset 1 holds a write-only
// descriptor of a memory file, and when QEMU answers the save command the agent copies the file
// to console 1 before the answer reaches libxl (the relay's reply hook, qemu/relay-watch.ts).
import type { Logger } from "../log.ts";

/** A device state larger than this is refused: QEMU's, without guest RAM, is far smaller. */
export const MAX_SAVE_BYTES = 64 * 1024 * 1024;
/** The copy gives up when console 1 takes nothing for this long (dom0's backend is gone). */
export const SAVE_STALL_MS = 30_000;
const CHUNK = 64 * 1024;

export interface SaveStreamIo {
  /** Bytes QEMU wrote into the memory file. */
  size(): number;
  readAt(offset: number, max: number): Uint8Array;
  /** Non-blocking write to console 1: bytes taken, 0 when its buffer is full. */
  writeConsole(data: Uint8Array): number;
  /** Empties the memory file for the next save. */
  truncate(): void;
  sleep(ms: number): Promise<void>;
  nowMs(): number;
}

/** Copies QEMU's saved state to console 1; returns the byte count, throws with the reason. */
export async function copySaveStream(io: SaveStreamIo, log: Logger): Promise<number> {
  const size = io.size();
  try {
    if (size === 0) throw new Error("QEMU wrote no device state into fdset 1");
    if (size > MAX_SAVE_BYTES) throw new Error(`QEMU's device state is ${size} bytes, limit ${MAX_SAVE_BYTES}`);
    const t0 = io.nowMs();
    let done = 0;
    let progressAt = t0;
    while (done < size) {
      const chunk = io.readAt(done, Math.min(CHUNK, size - done));
      if (chunk.length === 0) throw new Error(`the memory file ended at ${done} of ${size} bytes`);
      let off = 0;
      while (off < chunk.length) {
        const n = io.writeConsole(chunk.subarray(off));
        if (n > 0) {
          off += n;
          progressAt = io.nowMs();
          continue;
        }
        if (io.nowMs() - progressAt > SAVE_STALL_MS) {
          throw new Error(`console 1 took nothing for ${SAVE_STALL_MS} ms at ${done + off} of ${size} bytes`);
        }
        await io.sleep(5);
      }
      done += chunk.length;
    }
    log.info(`save: ${size} bytes of QEMU device state to console 1 in ${Math.round(io.nowMs() - t0)} ms`);
    return size;
  } finally {
    io.truncate();
  }
}
