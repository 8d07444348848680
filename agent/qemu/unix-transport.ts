// QmpTransport over a UNIX stream socket made through ffi/libc.ts: Bun's own sockets cannot
// attach file descriptors, and QEMU's add-fd needs the fd in the same sendmsg as the command.
// Reading goes through Bun.file(fd).stream(), which waits for readiness without blocking
// the event loop (bun-as-pid1.md).
import { close, connectUnix, sendWithFds, shutdownSocket } from "../../ffi/libc.ts";
import type { QmpTransport } from "./qmp.ts";

export function unixTransport(path: string): QmpTransport {
  const fd = connectUnix(path);
  const stream = Bun.file(fd).stream();
  let closed = false;
  return {
    send: (data, fds) => {
      const n = sendWithFds(fd, data, fds);
      // QMP messages are small and the socket buffer is empty between commands; a short
      // write means the peer stopped reading, which the caller treats as a dead monitor.
      if (n !== data.length) throw new Error(`qmp ${path}: short write (${n} of ${data.length} bytes)`);
    },
    chunks: () => stream,
    close: () => {
      if (closed) return;
      closed = true;
      // Shut down first: the peer (QEMU) must see the end now, so the next client it accepts
      // gets a fresh greeting, even if the stream's cancel settles later.
      try {
        shutdownSocket(fd);
      } catch {
        // already reset by the peer: closing is all that is left
      }
      void stream.cancel().catch(() => undefined).finally(() => close(fd));
    },
  };
}
