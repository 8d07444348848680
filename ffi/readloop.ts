// Reading an fd without blocking the event loop: Bun.file(fd).stream() waits for readiness in
// Bun's poller (bun-as-pid1.md). A socket error ends such a stream, yet for packet and netlink
// sockets an error is a one-off report (ENETDOWN when the interface went down, ENOBUFS when
// events overflowed) and the next read works: so the loop reports it and opens a new stream.
// Those reports never come twice without a change in between (the link goes down again, the
// queue overflows again), so they never end the loop. Other errors five times in a row without
// data in between mean the fd itself is broken: give up then.
//
// The loop owns the fd: Bun's poller holds the number while a reader exists, and a number that
// is closed under it can be handed to the next open() while Bun still polls or unregisters it.
// So only the loop closes it, one turn of the event loop after its last reader has let go.
import { close } from "./libc.ts";

const MAX_ERRORS_IN_A_ROW = 5;
const REPORTS = new Set(["ENETDOWN", "ENOBUFS", "EAGAIN", "EINTR"]);

/** Reads `fd` until the returned stop() is called; stop() also closes `fd`, once it is safe. */
export function readLoop(fd: number, onChunk: (chunk: Uint8Array) => void, onError: (e: unknown, fatal: boolean) => void): () => void {
  let stopped = false;
  let cancel: (() => void) | undefined;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    setTimeout(() => close(fd), 0);
  };
  const loop = (async () => {
    let errors = 0;
    while (!stopped) {
      const reader = Bun.file(fd).stream().getReader();
      cancel = () => void reader.cancel().catch(() => undefined);
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done || stopped) return;
          errors = 0;
          onChunk(value);
        }
      } catch (e) {
        if (stopped) return;
        if (!REPORTS.has((e as { code?: string }).code ?? "")) errors++;
        const fatal = errors >= MAX_ERRORS_IN_A_ROW;
        onError(e, fatal);
        if (fatal) return;
      }
    }
  })();
  return () => {
    if (stopped) return;
    stopped = true;
    cancel?.();
    void loop.finally(release);
  };
}
