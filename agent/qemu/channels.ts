// The two RelayChannels for dom0's QMP: a libxenvchan server under Xen, a virtio-serial port
// in the development VM. Both wait for readiness through Bun.file(fd).stream() on an fd made
// non-blocking (a blocking read would freeze the event loop: bun-as-pid1.md).
import { close, errno, O, open, setNonBlocking, SysError, write } from "../../ffi/libc.ts";
import type { VchanServer } from "../../ffi/vchan.ts";
import type { RelayChannel, RelaySession } from "./relay.ts";

/**
 * libxenvchan's readiness is its event channel: reading /dev/xen/evtchn returns the pending
 * ports (that is all libxenvchan_wait does, besides blocking) and writing them back unmasks
 * them. So the stream's chunks are consumed, written back, and the rings then polled
 * without blocking.
 */
export function vchanChannel(openServer: () => VchanServer): RelayChannel {
  return {
    async accept(): Promise<RelaySession> {
      const srv = openServer();
      setNonBlocking(srv.eventFd, true);
      const events = Bun.file(srv.eventFd).stream().getReader();
      const nextEvent = async (): Promise<boolean> => {
        const r = await events.read();
        if (r.done) return false;
        write(srv.eventFd, r.value); // unmask what we consumed
        return true;
      };
      try {
        while (srv.state() === 2) {
          if (!(await nextEvent())) throw new Error("vchan event channel closed");
        }
      } catch (e) {
        await events.cancel().catch(() => undefined);
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
      let closed = false;
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
          pending.push(data.slice());
          flush();
        },
        close() {
          if (closed) return;
          closed = true;
          void events.cancel().catch(() => undefined).finally(() => srv.close());
        },
      };
    },
  };
}

/** How long a read may stay pending before we believe the host side is connected. */
const CONNECTED_AFTER_MS = 200;

/**
 * A virtio-serial port: a read returns end-of-file at once while nobody is connected on the
 * host side (vm-harness.md), and stays pending once someone is. There is no connect event, so
 * while nobody is there the port is retried every `retryMs`: the development VM only.
 */
export function virtioChannel(path: string, retryMs = 500): RelayChannel {
  return {
    async accept(): Promise<RelaySession> {
      for (;;) {
        const fd = open(path, O.RDWR | O.NONBLOCK | O.NOCTTY | O.CLOEXEC);
        const reader = Bun.file(fd).stream().getReader();
        const first = reader.read();
        const r = await Promise.race([first, Bun.sleep(CONNECTED_AFTER_MS).then(() => "pending" as const)]);
        if (r !== "pending" && r.done) {
          await reader.cancel().catch(() => undefined);
          close(fd);
          await Bun.sleep(retryMs);
          continue;
        }
        let closed = false;
        return {
          async *chunks() {
            const head = r === "pending" ? await first : r;
            if (head.done) return;
            yield head.value;
            for (;;) {
              const next = await reader.read();
              if (next.done) return;
              yield next.value;
            }
          },
          write(data) {
            const n = write(fd, data);
            if (n !== data.length) throw new SysError("write", errno(), `${path} (short write ${n}/${data.length})`);
          },
          close() {
            if (closed) return;
            closed = true;
            void reader.cancel().catch(() => undefined).finally(() => close(fd));
          },
        };
      }
    },
  };
}
