// libxenvchan (Debian libxenmisc4.17) through bun:ffi: the server end of the QMP channel that
// dom0's vchan-socket-proxy connects to (xen-stubdom-protocol.md §6). Only non-blocking calls
// are bound: readiness comes from the event-channel fd (see agent/qemu/vchan-channel.ts),
// never from libxenvchan_wait, which would freeze the event loop.
import { FFIType, type Pointer } from "bun:ffi";
import { errno, lazyLibrary, SysError } from "./libc.ts";

const LIB = "libxenvchan.so.4.17";
const { ptr, i32, u64, void: none } = FFIType;
const symbols = {
  libxenvchan_server_init: { args: [ptr, i32, ptr, u64, u64], returns: ptr },
  libxenvchan_close: { args: [ptr], returns: none },
  libxenvchan_read: { args: [ptr, ptr, u64], returns: i32 },
  libxenvchan_write: { args: [ptr, ptr, u64], returns: i32 },
  libxenvchan_is_open: { args: [ptr], returns: i32 },
  libxenvchan_data_ready: { args: [ptr], returns: i32 },
  libxenvchan_buffer_space: { args: [ptr], returns: i32 },
  libxenvchan_fd_for_select: { args: [ptr], returns: i32 },
} as const;

const vc = lazyLibrary(LIB, symbols, "libxenmisc4.17");

export interface VchanServer {
  /** The event channel's fd: readable when the peer notified us. */
  readonly eventFd: number;
  /** 0 = the client left, 1 = connected, 2 = waiting for the first client. */
  state(): number;
  dataReady(): number;
  bufferSpace(): number;
  /** Up to `max` bytes, never blocking (the library's default non-blocking mode). */
  read(max: number): Uint8Array;
  /** Bytes written (maybe fewer than given when the ring is full). */
  write(data: Uint8Array): number;
  close(): void;
}

export function vchanServer(peerDomid: number, xsPath: string, ringBytes = 4096): VchanServer {
  const path = new TextEncoder().encode(`${xsPath}\0`);
  const ctrl = vc().libxenvchan_server_init(null, peerDomid, path, BigInt(ringBytes), BigInt(ringBytes)) as Pointer | null;
  if (ctrl === null) throw new SysError("libxenvchan_server_init", errno(), xsPath);
  let closed = false;
  const live = (): Pointer => {
    if (closed) throw new Error(`vchan ${xsPath} is closed`);
    return ctrl;
  };
  return {
    eventFd: vc().libxenvchan_fd_for_select(ctrl),
    state: () => vc().libxenvchan_is_open(live()),
    dataReady: () => vc().libxenvchan_data_ready(live()),
    bufferSpace: () => vc().libxenvchan_buffer_space(live()),
    read(max) {
      const buf = new Uint8Array(max);
      const n = vc().libxenvchan_read(live(), buf, BigInt(max));
      if (n < 0) throw new SysError("libxenvchan_read", errno(), xsPath);
      return buf.subarray(0, n);
    },
    write(data) {
      const n = vc().libxenvchan_write(live(), data, BigInt(data.length));
      if (n < 0) throw new SysError("libxenvchan_write", errno(), xsPath);
      return n;
    },
    close() {
      if (closed) return;
      closed = true;
      vc().libxenvchan_close(ctrl);
    },
  };
}
