// The save stream against a real QEMU (Debian's qemu-system-x86_64, which has Xen's
// xen-save-devices-state): what libxl sends through the relay makes QEMU write its device state
// into our memory file, and the answer reaches the client only once the state is on "console 1"
// (a file here). Also why the descriptor is write-only: QEMU picks an fd of a set by access mode.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, expect, test } from "vitest";
import { close, listenUnixForChild, O, open } from "../../ffi/libc.ts";
import { memfdCreate } from "../../ffi/memfd.ts";
import { buildQemuArgv } from "../../agent/qemu/argv.ts";
import { QmpClient, QmpError } from "../../agent/qemu/qmp.ts";
import { runQmpRelay, type RelayChannel, type RelaySession } from "../../agent/qemu/relay.ts";
import { replyHook } from "../../agent/qemu/relay-watch.ts";
import { unixTransport } from "../../agent/qemu/unix-transport.ts";
import { copySaveStream } from "../../agent/init/save-stream.ts";
import { openSaveStream } from "../../agent/init/wiring.ts";
import { createLogger } from "../../agent/log.ts";

let dir: string;
let qemu: ReturnType<typeof Bun.spawn>;
let qmp: QmpClient;

beforeAll(async () => {
  dir = mkdtempSync(`${tmpdir()}/save-stream-`);
  // A PC with its devices, stopped before it runs (-S): a device state worth saving.
  const built = buildQemuArgv({
    dmArgv: ["-machine", "pc", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-S"],
    restoreArgIndex: null,
    monitors: ["qmp-agent", "qmp-relay"],
    restoreFd: false,
    sandbox: true,
  });
  if (!built.ok) throw new Error(built.reason);
  const fds = [listenUnixForChild(`${dir}/agent.sock`), listenUnixForChild(`${dir}/relay.sock`)];
  qemu = Bun.spawn(["/usr/bin/qemu-system-x86_64", ...built.argv], { stdio: ["ignore", "inherit", "inherit", ...fds] });
  for (const fd of fds) close(fd);
  qmp = await QmpClient.connect(unixTransport(`${dir}/agent.sock`), 10_000);
});

afterAll(async () => {
  qemu.kill("SIGKILL");
  await qemu.exited;
  rmSync(dir, { recursive: true, force: true });
});

class Client implements RelaySession {
  received = "";
  private inbox: Uint8Array[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  async *chunks() {
    for (;;) {
      const c = this.inbox.shift();
      if (c) yield c;
      else if (this.ended) return;
      else await new Promise<void>((r) => (this.wake = r));
    }
  }
  write(data: Uint8Array) {
    this.received += new TextDecoder().decode(data);
  }
  close() {}
  send(s: string) {
    this.inbox.push(new TextEncoder().encode(s));
    this.wake?.();
  }
  leave() {
    this.ended = true;
    this.wake?.();
  }
  async waitFor(re: RegExp, ms = 10_000) {
    const until = performance.now() + ms;
    while (!re.test(this.received)) {
      if (performance.now() > until) throw new Error(`timed out waiting for ${re}: got ${this.received}`);
      await Bun.sleep(5);
    }
  }
}

test("a read-write descriptor in the set does not serve QEMU's write-only open (EACCES): ours is write-only", async () => {
  const rw = memfdCreate("rw");
  try {
    await qmp.execute("add-fd", { "fdset-id": 7 }, 5000, [rw]);
  } finally {
    close(rw);
  }
  const err = await qmp.execute("xen-save-devices-state", { filename: "/dev/fdset/7", live: false }).catch((e) => e);
  expect(err).toBeInstanceOf(QmpError);
  expect(String(err)).toMatch(/Permission denied/);
});

test("libxl's save through the relay: QEMU's answer reaches the client after its whole state is on console 1", async () => {
  const consolePath = `${dir}/console1`;
  Bun.spawnSync(["touch", consolePath]);
  const stream = openSaveStream(consolePath);
  const fd = stream.qemuFd();
  try {
    await qmp.execute("add-fd", { "fdset-id": 1, opaque: "hvc1" }, 5000, [fd]);
  } finally {
    close(fd);
  }
  const log = createLogger({ sink: { write: () => undefined } });
  let atReply = -1;
  const client = new Client();
  const channel: RelayChannel = { accept: async () => client };
  const relay = runQmpRelay({
    channel,
    connectQemu: () => unixTransport(`${dir}/relay.sock`),
    log,
    sessions: 1,
    watch: () => replyHook("xen-save-devices-state", async () => void (await copySaveStream(stream.io, log)), log),
  });
  await client.waitFor(/"QMP"/);
  client.send('{"execute":"qmp_capabilities","id":1}\r\n{"execute":"stop","id":2}\r\n');
  await client.waitFor(/"id": 2/);
  // libxl sends the command in one write; the id comes last, as in libxl's JSON.
  client.send('{"execute":"xen-save-devices-state","arguments":{"live":false,"filename":"/dev/fdset/1"},"id":3}\r\n');
  await client.waitFor(/"return": \{\}, "id": 3/);
  atReply = statSync(consolePath).size;
  client.leave();
  await relay;
  const saved = readFileSync(consolePath);
  expect(atReply).toBeGreaterThan(1000);
  expect(saved.length).toBe(atReply);
  expect(new TextDecoder().decode(saved.subarray(0, 4))).toBe("QEVM");
  expect(stream.io.size()).toBe(0); // emptied for the next save
});
