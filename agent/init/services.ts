// What PID 1 runs beside QEMU once supervision starts: the dom0 QMP relay, which also carries
// libxl's save (the reply hook that puts QEMU's saved state on console 1 first), and the debug
// shell of stubdom.shell=1. Neither may take PID 1 down: failures are logged and reported.
import { vchanServer } from "../../ffi/vchan.ts";
import type { AgentOptions, StubdomConfig } from "../config/types.ts";
import type { HealthWriter } from "../health/writer.ts";
import { procRss } from "../health/proc.ts";
import type { Logger } from "../log.ts";
import { vchanChannel, virtioChannel } from "../qemu/channels.ts";
import { runQmpRelay, type RelayChannel } from "../qemu/relay.ts";
import { replyHook } from "../qemu/relay-watch.ts";
import { unixTransport } from "../qemu/unix-transport.ts";
import type { Processes } from "./processes.ts";
import { copySaveStream } from "./save-stream.ts";
import { findVirtioPort } from "./virtio.ts";
import type { SaveStream } from "./wiring.ts";

/**
 * dom0's QMP: libxl's vchan-socket-proxy connects to a vchan server at
 * device-model/<G>/qmp-vchan with peer domid 0 (protocol §6); the development VM uses a
 * virtio-serial port named on the kernel command line instead.
 */
export function startQmpRelay(o: {
  options: AgentOptions;
  config: StubdomConfig;
  log: Logger;
  /** QEMU's monitor reserved for the relay. */
  monitor: string;
  saveStream: SaveStream | null;
  report: Pick<HealthWriter, "error">;
}): void {
  const { options, config, log, monitor, saveStream } = o;
  // libxl's save goes through the relay; QEMU's answer waits until its state is on console 1.
  const onSaved = (stream: SaveStream) => async () => {
    try {
      await copySaveStream(stream.io, log);
    } catch (e) {
      const msg = `save: ${(e as Error).message}`;
      log.error(msg);
      o.report.error(msg);
    }
  };
  let channel: RelayChannel;
  if (options.qmp.kind === "virtio") {
    const port = findVirtioPort(options.qmp.name);
    if (!port) {
      log.error(`QMP relay: no virtio-serial port named ${options.qmp.name}`);
      return;
    }
    channel = virtioChannel(port);
    log.info(`QMP relay: dom0 clients via ${port}`);
  } else {
    const path = `/local/domain/${config.stubDomid}/device-model/${config.guestDomid}/qmp-vchan`;
    const rlog = log.child("qmp-relay");
    channel = vchanChannel(() => vchanServer(0, path), (m) => rlog.debug(m));
    log.info(`QMP relay: dom0 clients via vchan ${path}`);
  }
  void runQmpRelay({
    channel,
    connectQemu: () => unixTransport(monitor),
    log: log.child("qmp-relay"),
    anonKib: () => procRss("self")?.anonKib,
    ...(saveStream ? { watch: () => replyHook("xen-save-devices-state", onSaved(saveStream), log) } : {}),
  });
}

/** Through the supervisor's Processes, so that the orphan reaper never takes its exit. */
export function startDebugShell(processes: Processes, log: Logger): void {
  log.warn("stubdom.shell=1: debug shell on the console");
  try {
    const sh = processes.spawn(["/bin/sh"], { console: "shell", env: { PATH: "/usr/bin:/usr/sbin:/bin:/sbin", HOME: "/" } });
    void sh.exited.then((e) => log.info(`debug shell exited (${e.signal ?? `code ${e.code}`})`), () => undefined);
  } catch (e) {
    log.error(`debug shell: ${(e as Error).message}`);
  }
}
