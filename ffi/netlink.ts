// rtnetlink sockets through bun:ffi. Two sockets: one for requests (replies matched by
// sequence number) and, only when someone subscribes, one bound to RTNLGRP_LINK for link
// events. Separate receive queues mean a burst of events (many links changing at once) can
// overflow only the event socket (ENOBUFS: re-read the links), never lose a request's ack.
//
// Reads never block the event loop: the sockets are non-blocking and read through
// ffi/readloop.ts. A chunk may hold several datagrams; codec.split() cuts them at nlmsg_len.
import { FFIType, ptr } from "bun:ffi";
import { errno, lazyLibrary, SysError } from "./libc.ts";
import { readLoop } from "./readloop.ts";
import { decode, encode, extAckMessage, IFF_UP, NLM_F_ACK, NLM_F_DUMP, RTM_DELLINK, RTM_NEWLINK, split, type Message } from "../agent/net/codec.ts";
import { NetlinkError, type LinkEvent, type Netlink } from "../agent/net/types.ts";
import { DUMP_INTERRUPTED, EINTR, ETIMEDOUT } from "../agent/net/errno.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const RTMGRP_LINK = 1;
const IFF_LOWER_UP = 0x10000;
const NLM_F_DUMP_INTR = 0x10;

const symbols = {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
  setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
} as const;

const c = lazyLibrary("libc.so.6", symbols);

function sockaddrNl(groups: number): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_NETLINK, true);
  dv.setUint32(8, groups, true);
  return b;
}

function setInt(fd: number, level: number, name: number, value: number, what: string): void {
  const v = new Int32Array([value]);
  if (c().setsockopt(fd, level, name, ptr(v), 4) !== 0) throw new SysError("setsockopt", errno(), what);
}

function openSocket(groups: number): number {
  const fd = c().socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw new SysError("socket", errno(), "AF_NETLINK NETLINK_ROUTE");
  try {
    setInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1, "NETLINK_EXT_ACK");
    setInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1, "NETLINK_CAP_ACK");
    // Event bursts (many links changing at once) must not overflow into ENOBUFS.
    if (groups !== 0) setInt(fd, SOL_SOCKET, SO_RCVBUF, 1 << 20, "SO_RCVBUF");
    const sa = sockaddrNl(groups);
    if (c().bind(fd, ptr(sa), sa.length) !== 0) throw new SysError("bind", errno(), "AF_NETLINK");
  } catch (e) {
    c().close(fd);
    throw e;
  }
  return fd;
}

/** Reads every message arriving on fd until stopped; fn is called once per message. */
function pump(fd: number, fn: (m: Message) => void, onError: (e: unknown, fatal: boolean) => void): () => void {
  let rest = new Uint8Array(0);
  return readLoop(fd, (value) => {
    const chunk = rest.length > 0 ? concat(rest, value) : value;
    const parts = split(chunk);
    rest = parts.rest.slice();
    for (const raw of parts.messages) {
      let m: Message;
      try {
        m = decode(raw);
      } catch (e) {
        onError(e, false);
        continue;
      }
      fn(m);
    }
  }, (e, fatal) => {
    rest = new Uint8Array(0);
    onError(e, fatal);
  });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

interface Pending {
  replies: Message[];
  /** A dump part carried NLM_F_DUMP_INTR: the kernel's tables changed while dumping. */
  interrupted: boolean;
  waitsForEnd: boolean;
  resolve(m: Message[]): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export interface RtnetlinkOptions {
  /** Per-request timeout; the kernel answers rtnetlink synchronously, so this only trips on bugs. */
  timeoutMs?: number;
  /**
   * Called when a socket read fails: requests in flight are rejected; for the event socket
   * (ENOBUFS after an overflow) events were lost and the caller should re-read the links.
   * fatal: the socket gave up.
   */
  onError?: (e: unknown, fatal: boolean) => void;
}

export class Rtnetlink implements Netlink {
  private readonly fd: number;
  private seq = Math.floor(Date.now() / 1000) >>> 0;
  private readonly pending = new Map<number, Pending>();
  /** The end of the queue of dumps (see request). */
  private dumps: Promise<void> = Promise.resolve();
  private readonly stopReq: () => void;
  private events?: { fd: number; stop: () => void };
  private readonly listeners = new Set<(ev: LinkEvent) => void>();
  private readonly lostListeners = new Set<(e: unknown) => void>();
  private closed = false;

  constructor(private readonly opts: RtnetlinkOptions = {}) {
    this.fd = openSocket(0);
    this.stopReq = pump(this.fd, (m) => this.onReply(m), (e, fatal) => this.fail(e, fatal));
  }

  request(msg: Message, o: { timeoutMs?: number } = {}): Promise<Message[]> {
    if ((msg.header.flags & NLM_F_DUMP) !== NLM_F_DUMP) return this.send(msg, o);
    // A netlink socket runs one dump at a time (a second one gets EBUSY), so dumps from
    // independent callers (health reports, linkNic, the CLI) wait their turn. Other requests
    // go at once: they are sent within this call, in call order, which batches rely on.
    const turn = this.dumps.then(() => this.send(msg, o));
    this.dumps = turn.then(() => undefined, () => undefined);
    return turn;
  }

  private send(msg: Message, o: { timeoutMs?: number }): Promise<Message[]> {
    if (this.closed) return Promise.reject(new Error("netlink: socket closed"));
    this.seq = (this.seq + 1) >>> 0 || 1;
    const seq = this.seq;
    const bytes = encode({ ...msg, header: { ...msg.header, seq, pid: 0 } } as Message);
    return new Promise<Message[]>((resolve, reject) => {
      const timeoutMs = o.timeoutMs ?? this.opts.timeoutMs ?? 2000;
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new NetlinkError(`netlink request type ${msg.header.type}`, ETIMEDOUT, `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const waitsForEnd = (msg.header.flags & (NLM_F_ACK | NLM_F_DUMP)) !== 0;
      this.pending.set(seq, { replies: [], interrupted: false, waitsForEnd, resolve, reject, timer });
      const dest = sockaddrNl(0);
      const n = c().sendto(this.fd, ptr(bytes), bytes.length, 0, ptr(dest), dest.length);
      if (Number(n) !== bytes.length) {
        const err = errno();
        clearTimeout(timer);
        this.pending.delete(seq);
        reject(new SysError("sendto", err, "netlink"));
      }
    });
  }

  private onReply(m: Message): void {
    const p = this.pending.get(m.header.seq);
    if (!p) return; // a late answer to a request that timed out
    const finish = () => {
      clearTimeout(p.timer);
      this.pending.delete(m.header.seq);
    };
    if (m.kind === "error") {
      finish();
      if (m.error === 0) p.resolve(p.replies);
      else p.reject(new NetlinkError(`netlink request`, -m.error, extAckMessage(m)));
    } else if (m.kind === "done") {
      finish();
      if (p.interrupted || m.header.flags & NLM_F_DUMP_INTR) p.reject(new NetlinkError("netlink dump", EINTR, DUMP_INTERRUPTED));
      else p.resolve(p.replies);
    } else {
      if (m.header.flags & NLM_F_DUMP_INTR) p.interrupted = true;
      p.replies.push(m);
      if (!p.waitsForEnd) {
        finish();
        p.resolve(p.replies);
      }
    }
  }

  private fail(e: unknown, fatal = false): void {
    this.opts.onError?.(e, fatal);
    this.rejectAll(e);
  }

  private rejectAll(e: unknown): void {
    for (const [seq, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(seq);
      p.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  onLink(listener: (ev: LinkEvent) => void, onLost?: (error: unknown) => void): () => void {
    if (!this.events && !this.closed) {
      const fd = openSocket(RTMGRP_LINK);
      const stop = pump(fd, (m) => this.onEvent(m), (e, fatal) => {
        this.opts.onError?.(e, fatal);
        for (const l of [...this.lostListeners]) l(e);
      });
      this.events = { fd, stop };
    }
    this.listeners.add(listener);
    if (onLost) this.lostListeners.add(onLost);
    return () => {
      this.listeners.delete(listener);
      if (onLost) this.lostListeners.delete(onLost);
    };
  }

  private onEvent(m: Message): void {
    if (m.kind !== "link" || (m.header.type !== RTM_NEWLINK && m.header.type !== RTM_DELLINK)) return;
    const name = m.attrs.find((a) => a.kind === "ifname");
    const ev: LinkEvent = {
      type: m.header.type === RTM_NEWLINK ? "new" : "del",
      index: m.ifi.index,
      name: name?.kind === "ifname" ? name.value : "",
      up: (m.ifi.flags & IFF_UP) !== 0,
      lowerUp: (m.ifi.flags & IFF_LOWER_UP) !== 0,
      attrs: m.attrs,
    };
    for (const l of this.listeners) l(ev);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The read loops own their sockets and close them once Bun's poller let go (readloop.ts).
    this.stopReq();
    this.events?.stop();
    this.rejectAll(new Error("netlink: socket closed"));
  }
}
