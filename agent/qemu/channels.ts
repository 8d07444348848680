// The two RelayChannels for dom0's QMP: a libxenvchan server under Xen, a virtio-serial port
// in the development VM. Neither blocks the event loop (a blocking read would freeze it:
// bun-as-pid1.md).
import { close as closeFd, dupCloexec, errno, O, open, pollNow, POLLHUP, setNonBlocking, SysError, write } from "../../ffi/libc.ts";
import type { VchanServer } from "../../ffi/vchan.ts";
import type { RelayChannel, RelaySession } from "./relay.ts";

/**
 * One libxenvchan server for the whole life of the agent, serving dom0's clients one after the
 * other, as vchan-socket-proxy's own server mode does: the state goes 2 (no client yet) → 1
 * (connected) → 0 (left) → 1 (the next client) ... Setting up a server per client meant a
 * new grant-shared ring and event channel per QMP command, torn down while dom0's proxy was
 * still unmapping the old one.
 *
 * Readiness is the event channel: reading /dev/xen/evtchn returns the pending ports and
 * writing them back unmasks them. We read them on the main thread through Bun's own poller,
 * from a duplicate of the event channel's fd that is ours, so that Bun never holds a number
 * that C closes. A port stays masked until we write it back, so at most one notification waits
 * unread; every waiter shares the one read in flight.
 */
/** QEMU output held for a client whose ring is full: past this the session ends. */
export const RELAY_PENDING_LIMIT = 64 * 1024;

export function vchanChannel(openServer: () => VchanServer, debug: (msg: string) => void = () => undefined): RelayChannel {
  interface Live {
    srv: VchanServer;
    /** Resolves true on the next notification (already unmasked), false when the channel broke. */
    nextEvent(): Promise<boolean>;
    stop(why: string): void;
  }
  let live: Live | undefined;

  const start = (): Live => {
    const srv = openServer();
    let fd: number;
    try {
      fd = dupCloexec(srv.eventFd);
      setNonBlocking(fd, true);
    } catch (e) {
      srv.close();
      throw e;
    }
    debug(`vchan server up, event channel fd ${srv.eventFd} (ours: ${fd})`);
    const reader = Bun.file(fd).stream().getReader();
    let inflight: Promise<boolean> | undefined;
    let stopped = false;
    const self: Live = {
      srv,
      nextEvent: () =>
        (inflight ??= (async () => {
          try {
            const next = await reader.read();
            if (stopped || next.done) return false;
            write(fd, next.value); // unmask what we consumed
            return true;
          } catch (e) {
            if (!stopped) debug(`vchan event channel: ${(e as Error).message}`);
            return false;
          } finally {
            inflight = undefined;
          }
        })()),
      stop(why) {
        if (stopped) return;
        stopped = true;
        debug(`vchan server closing: ${why}`);
        if (live === self) live = undefined;
        srv.close();
        // Ours is closed once Bun's reader has let go of it, never while it may still poll it.
        void reader.cancel().catch(() => undefined).finally(() => setTimeout(() => closeFd(fd), 0));
      },
    };
    return self;
  };

  return {
    async accept(): Promise<RelaySession> {
      const l = (live ??= start());
      const { srv } = l;
      let events = 0;
      while (srv.state() !== 1) {
        if (!(await l.nextEvent())) {
          l.stop("the event channel ended while waiting for a client");
          throw new Error("vchan: the event channel ended while waiting for a client");
        }
        events++;
      }
      debug(`vchan client connected after ${events} event(s)`);
      let ended = false;
      const pending: Uint8Array[] = [];
      let pendingBytes = 0;
      const flush = () => {
        while (pending.length > 0 && srv.state() === 1) {
          const head = pending[0] as Uint8Array;
          const n = srv.write(head.subarray(0, Math.min(head.length, srv.bufferSpace())));
          if (n === 0) return; // ring full: the client's next notification resumes us
          pendingBytes -= n;
          if (n === head.length) pending.shift();
          else pending[0] = head.subarray(n);
        }
      };
      return {
        async *chunks() {
          for (;;) {
            if (ended) return;
            flush();
            while (srv.state() === 1 && srv.dataReady() > 0) {
              yield srv.read(Math.max(srv.dataReady(), 1));
              if (ended) return;
            }
            if (srv.state() !== 1) return;
            if (!(await l.nextEvent())) {
              l.stop("the event channel ended during a session");
              return;
            }
          }
        },
        write(data) {
          if (ended) return;
          pending.push(data.slice());
          pendingBytes += data.length;
          flush();
          // A client that stops reading must not make us hold QEMU's output without end.
          if (pendingBytes > RELAY_PENDING_LIMIT) throw new Error(`vchan: the client does not read (${pendingBytes} bytes unsent)`);
        },
        close() {
          if (ended) return;
          ended = true;
          // What a client that left did not get read is not the next client's. A new client
          // sends nothing before QEMU's greeting, which only a new session gives it.
          let dropped = 0;
          while (live === l && srv.state() === 0 && srv.dataReady() > 0) dropped += srv.read(srv.dataReady()).length;
          debug(`vchan session over (state ${srv.state()}, ${pending.length} chunk(s) unsent, ${dropped} byte(s) dropped)`);
        },
      };
    },
  };
}

const EBUSY = 16;

/**
 * A virtio-serial port. The port itself says whether the host side is connected: poll()
 * reports POLLHUP while nobody is (virtio_console's port_fops_poll), and a read then returns
 * end-of-file (vm-harness.md). There is no connect event, so while nobody is there the port
 * is checked every `retryMs` with a zero-timeout poll: the development VM only. The port
 * allows one open at a time, so one fd serves every session.
 */
export function virtioChannel(path: string, retryMs = 250): RelayChannel {
  let fd: number | undefined;
  let previous: Promise<void> = Promise.resolve();
  const openPort = async (): Promise<number> => {
    for (;;) {
      try {
        return open(path, O.RDWR | O.NONBLOCK | O.NOCTTY | O.CLOEXEC);
      } catch (e) {
        if (!(e instanceof SysError && e.errno === EBUSY)) throw e;
        await Bun.sleep(retryMs); // someone else has it open (a debugging session)
      }
    }
  };
  return {
    async accept(): Promise<RelaySession> {
      await previous;
      fd ??= await openPort();
      const port = fd;
      while (pollNow(port) & POLLHUP) await Bun.sleep(retryMs);
      const reader = Bun.file(port).stream().getReader();
      let done: (() => void) | undefined;
      previous = new Promise<void>((r) => (done = r));
      let closed = false;
      return {
        async *chunks() {
          for (;;) {
            const next = await reader.read();
            if (next.done) return;
            yield next.value;
          }
        },
        write(data) {
          const n = write(port, data);
          if (n !== data.length) throw new SysError("write", errno(), `${path} (short write ${n}/${data.length})`);
        },
        close() {
          if (closed) return;
          closed = true;
          void reader.cancel().catch(() => undefined).finally(() => done?.());
        },
      };
    },
  };
}
