// The two RelayChannels for dom0's QMP: a libxenvchan server under Xen, a virtio-serial port
// in the development VM. Neither blocks the event loop (a blocking read would freeze it:
// bun-as-pid1.md).
import { createFdWaiter, type FdWaiter } from "../../ffi/fd-waiter.ts";
import { errno, O, open, pollNow, POLLHUP, readNow, setNonBlocking, SysError, write } from "../../ffi/libc.ts";
import type { VchanServer } from "../../ffi/vchan.ts";
import type { RelayChannel, RelaySession } from "./relay.ts";

/**
 * libxenvchan's readiness is its event channel: reading /dev/xen/evtchn returns the pending
 * ports (that is all libxenvchan_wait does, besides blocking) and writing them back unmasks
 * them. Each client gets a new server, whose event channel fd usually reuses the number of the
 * previous one: so readiness comes from a poll() Worker (ffi/fd-waiter.ts), never from a
 * Bun.file stream, whose asynchronous teardown could unregister its successor. With streams the
 * second client of a boot hung in 3 of ~12 nested-Xen boots and PID 1 then ran the stub domain
 * out of memory; with the Worker it did not happen in the 14 boots since.
 */
export function vchanChannel(openServer: () => VchanServer, waiter: FdWaiter = createFdWaiter()): RelayChannel {
  return {
    async accept(): Promise<RelaySession> {
      const srv = openServer();
      setNonBlocking(srv.eventFd, true);
      let closed = false;
      /** Waits for a notification, consumes and unmasks it; false once the session closed. */
      const nextEvent = async (): Promise<boolean> => {
        for (;;) {
          if (closed) return false;
          const ports = readNow(srv.eventFd, 64);
          if (ports !== null && ports.length > 0) {
            write(srv.eventFd, ports); // unmask what we consumed
            return true;
          }
          if (!(await waiter.readable(srv.eventFd))) return false;
        }
      };
      try {
        while (srv.state() === 2) {
          if (!(await nextEvent())) throw new Error("vchan: waiting for a client was cancelled");
        }
      } catch (e) {
        closed = true;
        srv.close();
        throw e;
      }
      const pending: Uint8Array[] = [];
      const flush = () => {
        while (pending.length > 0 && srv.state() === 1) {
          const head = pending[0] as Uint8Array;
          const n = srv.write(head.subarray(0, Math.min(head.length, srv.bufferSpace())));
          if (n === 0) return; // ring full: the client's next notification resumes us
          if (n === head.length) pending.shift();
          else pending[0] = head.subarray(n);
        }
      };
      return {
        async *chunks() {
          for (;;) {
            flush();
            while (srv.state() === 1 && srv.dataReady() > 0) yield srv.read(Math.max(srv.dataReady(), 1));
            if (closed || srv.state() !== 1) return;
            if (!(await nextEvent())) return;
          }
        },
        write(data) {
          if (closed) return;
          pending.push(data.slice());
          flush();
        },
        close() {
          if (closed) return;
          closed = true;
          waiter.cancel();
          srv.close();
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
