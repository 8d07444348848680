// QmpTransport over a UNIX stream socket made through ffi/libc.ts: Bun's own sockets cannot
// attach file descriptors, and QEMU's add-fd needs the fd in the same sendmsg as the command.
// Reading goes through Bun.file(fd).stream(), which waits for readiness without blocking
// the event loop (bun-as-pid1.md).
import { close, connectUnix, sendWithFds, shutdownSocket } from "../../ffi/libc.ts";
import type { QmpTransport } from "./qmp.ts";

export function unixTransport(path: string): QmpTransport {
  const fd = connectUnix(path);
  const reader = Bun.file(fd).stream().getReader();
  let closing = false;
  let released = false;
  // Bun's poller holds the fd number while the reader exists; closed under it, the number can
  // go to the next open() (the relay's next QEMU connection, a vchan server's device) while
  // Bun still polls or unregisters it. So the fd is closed only after the reader let go.
  const release = () => {
    if (released) return;
    released = true;
    setTimeout(() => close(fd), 0);
  };
  return {
    send: (data, fds) => {
      if (closing) throw new Error(`qmp ${path}: connection closed by us`);
      const n = sendWithFds(fd, data, fds);
      // QMP messages are small and the socket buffer is empty between commands; a short
      // write means the peer stopped reading, which the caller treats as a dead monitor.
      if (n !== data.length) throw new Error(`qmp ${path}: short write (${n} of ${data.length} bytes)`);
    },
    async *chunks() {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          yield value;
        }
      } finally {
        if (closing) release();
      }
    },
    close: () => {
      if (closing) return;
      closing = true;
      // Shut down first: the peer (QEMU) must see the end now, so the next client it accepts
      // gets a fresh greeting, even if the reader's cancel settles later.
      try {
        shutdownSocket(fd);
      } catch {
        // already reset by the peer: closing is all that is left
      }
      void reader.cancel().catch(() => undefined).finally(release);
    },
  };
}
