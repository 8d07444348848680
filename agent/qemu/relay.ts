// The QMP relay toward dom0: bytes between a channel (libxenvchan under Xen, a virtio-serial
// port in the development VM) and a QEMU monitor reserved for it. One client at a time; each
// client gets its own fresh connection to the monitor, so a client that reconnects gets a
// fresh greeting (the race Qubes' "reconnect marker" works around).
import type { Logger } from "../log.ts";
import type { QmpTransport } from "./qmp.ts";
import type { RelayWatch } from "./relay-watch.ts";

export interface RelaySession {
  /** Bytes from the client; ends when the client leaves. */
  chunks(): AsyncIterable<Uint8Array>;
  write(data: Uint8Array): void;
  /** Resolves once the channel can serve the next client. */
  close(): Promise<void> | void;
}

export interface RelayChannel {
  /** The next client; resolves once one is there. */
  accept(): Promise<RelaySession>;
}

export interface RelayOptions {
  channel: RelayChannel;
  /** A new connection to QEMU's relay monitor. */
  connectQemu(): QmpTransport;
  log: Logger;
  /** Stop after this many sessions (tests); default forever. */
  sessions?: number;
  /** Pause after a failed session, so a broken channel cannot spin. */
  retryMs?: number;
  /** PID 1's anonymous memory in KiB, logged with each session's end (growth = a leak). */
  anonKib?: () => number | undefined;
  /** A watch on each session's traffic (the save stream's reply hook). */
  watch?: () => RelayWatch;
}

/** Serves clients one after the other. Never throws: a failed session is logged. */
export async function runQmpRelay(o: RelayOptions): Promise<void> {
  for (let n = 0; o.sessions === undefined || n < o.sessions; n++) {
    let session: RelaySession | undefined;
    let qemu: QmpTransport | undefined;
    try {
      session = await o.channel.accept();
      qemu = o.connectQemu();
      const t0 = performance.now();
      o.log.info(`QMP relay: client ${n + 1} connected`);
      const q = qemu;
      const s = session;
      const bytes = { in: 0, out: 0 };
      const watch = o.watch?.();
      const toClient = (async () => {
        for await (const chunk of q.chunks()) {
          bytes.out += chunk.length;
          if (watch) await watch.beforeClient(chunk);
          s.write(chunk);
        }
        return "QEMU closed the monitor";
      })();
      const toQemu = (async () => {
        for await (const chunk of s.chunks()) {
          bytes.in += chunk.length;
          watch?.fromClient(chunk);
          q.send(chunk);
        }
        return "the client left";
      })();
      // Whichever side ends first ends the session; the other is closed below.
      const why = await Promise.race([toClient, toQemu]);
      const anon = o.anonKib?.();
      o.log.info(
        `QMP relay: client ${n + 1} done (${why}; ${bytes.in} bytes in, ${bytes.out} out, ` +
          `${Math.round(performance.now() - t0)} ms${anon === undefined ? "" : `; PID 1 RssAnon ${anon} KiB`})`,
      );
    } catch (e) {
      o.log.warn(`QMP relay: ${(e as Error).message}`);
      await Bun.sleep(o.retryMs ?? 1000);
    } finally {
      qemu?.close();
      // The next accept() must not start before this session is gone: a libxenvchan server
      // closed after its successor was set up takes the successor's xenstore keys with it.
      await session?.close();
    }
  }
}
