// Link-layer frames through bun:ffi: AF_PACKET sockets (the DHCP responder) and tap devices
// (/dev/net/tun).
//
// Tap design: the agent creates each QEMU tap itself as a persistent device (TUNSETIFF then
// TUNSETPERSIST) before QEMU starts, and joins it to its netfront right away; QEMU's
// `-netdev tap,ifname=vif<G>.<n>-emu` then attaches to the existing device instead of
// creating one. The redirect is therefore in place before the guest's first frame, with no
// window to race and no need to wait for QEMU. Link changes (netfront losing its backend, a
// tap deleted) still arrive as RTNLGRP_LINK events through ffi/netlink.ts.
//
// Reading (ffi/readloop.ts): a chunk from Bun.file(fd).stream() may hold several frames back
// to back. The socket filter (agent/net/bpf.ts
// dhcpSocketFilter) trims each frame to exactly its IPv4 length, so the reader can split a
// chunk by the IPv4 total length field.
import { FFIType, ptr } from "bun:ffi";
import { errno, lazyLibrary, SysError } from "./libc.ts";
import { readLoop } from "./readloop.ts";
import type { BpfInsn } from "../agent/net/codec.ts";
import type { FramePort } from "../agent/net/dhcp.ts";

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_ATTACH_FILTER = 26;
const ETH_P_ALL_BE = 0x0300;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFNAMSIZ = 16;

const symbols = {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  if_nametoindex: { args: [FFIType.cstring], returns: FFIType.u32 },
  open: { args: [FFIType.cstring, FFIType.i32, FFIType.u32], returns: FFIType.i32 },
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
} as const;

const c = lazyLibrary("libc.so.6", symbols);

const cstr = (s: string) => Buffer.from(`${s}\0`);

function checkName(name: string): void {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new Error(`'${name}' is not an interface name`);
}

export function ifIndex(name: string): number {
  checkName(name);
  const i = c().if_nametoindex(cstr(name));
  if (i === 0) throw new SysError("if_nametoindex", errno(), name);
  return i;
}

function tunAttach(name: string, flags: number): number {
  checkName(name);
  const fd = c().open(cstr("/dev/net/tun"), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0) throw new SysError("open", errno(), "/dev/net/tun");
  const ifr = new Uint8Array(40);
  ifr.set(Buffer.from(name), 0);
  new DataView(ifr.buffer).setUint16(IFNAMSIZ, flags, true);
  if (c().ioctl(fd, TUNSETIFF, ptr(ifr)) !== 0) {
    const e = errno();
    c().close(fd);
    throw new SysError("TUNSETIFF", e, name);
  }
  return fd;
}

/**
 * Creates (or re-attaches to) tap NAME and makes it persistent, so it outlives this fd and
 * QEMU can open it by name. Delete it with unlinkNic({deleteTap: true}).
 */
export function createPersistentTap(name: string): void {
  const fd = tunAttach(name, IFF_TAP | IFF_NO_PI);
  try {
    if (c().ioctl(fd, TUNSETPERSIST, 1 as unknown as ReturnType<typeof ptr>) !== 0) throw new SysError("TUNSETPERSIST", errno(), name);
  } finally {
    c().close(fd);
  }
}

/** Where the frame starting at `off` ends, or undefined when the chunk does not hold all of it. */
export type Splitter = (chunk: Uint8Array, off: number) => number | undefined;

/** For chunks of frames trimmed to their IPv4 length (dhcpSocketFilter does that). */
export const byIpv4Length: Splitter = (b, off) => {
  if (b.length - off < 14 + 20) return undefined;
  const ipLen = (b[off + 16]! << 8) | b[off + 17]!;
  return ipLen >= 20 && off + 14 + ipLen <= b.length ? off + 14 + ipLen : undefined;
};

/** For sources that only ever carry frames of one size (tests). */
export const fixedLength = (n: number): Splitter => (b, off) => (off + n <= b.length ? off + n : undefined);

function readFrames(fd: number, split: Splitter, fn: (frame: Uint8Array) => void, onError: (e: unknown) => void): () => void {
  return readLoop(fd, (chunk) => {
    let off = 0;
    for (let end = split(chunk, off); end !== undefined && off < chunk.length; end = split(chunk, off)) {
      fn(chunk.slice(off, end));
      off = end;
    }
    if (off < chunk.length) onError(new Error(`${chunk.length - off} bytes of a chunk are not a whole frame; dropped`));
  }, onError);
}

/**
 * A packet socket on interface NAME that receives only what `filter` keeps. The filter must
 * trim each frame to 14 + its IPv4 total length (the reader splits chunks on that).
 */
export function openPacketPort(name: string, filter: BpfInsn[], opts: { split?: Splitter; onError?: (e: unknown) => void } = {}): FramePort {
  const index = ifIndex(name);
  // Protocol 0 receives nothing until bind, so no unfiltered frame is queued before the filter is on.
  const fd = c().socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SysError("socket", errno(), `AF_PACKET on ${name}`);
  let stop: (() => void) | undefined;
  try {
    const insns = new Uint8Array(filter.length * 8);
    const idv = new DataView(insns.buffer);
    filter.forEach((i, n) => {
      idv.setUint16(n * 8, i.code, true);
      idv.setUint8(n * 8 + 2, i.jt);
      idv.setUint8(n * 8 + 3, i.jf);
      idv.setUint32(n * 8 + 4, i.k, true);
    });
    const prog = new Uint8Array(16);
    const pdv = new DataView(prog.buffer);
    pdv.setUint16(0, filter.length, true);
    pdv.setBigUint64(8, BigInt(ptr(insns)), true);
    if (c().setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, ptr(prog), prog.length) !== 0) throw new SysError("setsockopt", errno(), `SO_ATTACH_FILTER on ${name}`);
    const sll = new Uint8Array(20);
    const sdv = new DataView(sll.buffer);
    sdv.setUint16(0, AF_PACKET, true);
    sdv.setUint16(2, ETH_P_ALL_BE, true);
    sdv.setInt32(4, index, true);
    if (c().bind(fd, ptr(sll), sll.length) !== 0) throw new SysError("bind", errno(), `AF_PACKET on ${name}`);
  } catch (e) {
    c().close(fd);
    throw e;
  }
  let closed = false;
  return {
    send(frame: Uint8Array): void {
      if (closed) throw new Error(`packet socket on ${name} is closed`);
      const n = c().send(fd, ptr(frame), frame.length, 0);
      if (Number(n) !== frame.length) throw new SysError("send", errno(), `frame of ${frame.length} bytes on ${name}`);
    },
    onFrame(fn: (frame: Uint8Array) => void): void {
      if (stop) throw new Error("onFrame: one listener per port");
      stop = readFrames(fd, opts.split ?? byIpv4Length, fn, opts.onError ?? (() => undefined));
    },
    close(): void {
      if (closed) return;
      closed = true;
      // A read loop owns the fd once started and closes it when Bun's poller let go.
      if (stop) stop();
      else c().close(fd);
    },
  };
}

export interface TapHandle {
  write(frame: Uint8Array): void;
  /** Frames the tap sends to its user; a tap has no framing in a merged chunk, hence `split`. */
  onFrame(split: Splitter, fn: (frame: Uint8Array) => void, onError?: (e: unknown) => void): void;
  close(): void;
}

/** Attaches to tap NAME the way QEMU does (tests stand in for QEMU with it). */
export function openTapAsQemu(name: string): TapHandle {
  const fd = tunAttach(name, IFF_TAP | IFF_NO_PI);
  let stop: (() => void) | undefined;
  let closed = false;
  return {
    write(frame: Uint8Array): void {
      const n = c().write(fd, ptr(frame), frame.length);
      if (Number(n) !== frame.length) throw new SysError("write", errno(), `tap ${name}`);
    },
    onFrame(split, fn, onError = () => undefined): void {
      if (stop) throw new Error("onFrame: one listener per tap");
      stop = readFrames(fd, split, fn, onError);
    },
    close(): void {
      if (closed) return;
      closed = true;
      // A read loop owns the fd once started and closes it when Bun's poller let go.
      if (stop) stop();
      else c().close(fd);
    },
  };
}
