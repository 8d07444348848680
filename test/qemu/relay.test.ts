// The dom0 QMP relay against a real QEMU's dedicated monitor, with an in-memory channel
// standing in for the vchan: each client gets a fresh greeting, one client at a time.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, expect, test } from "vitest";
import { close, listenUnixForChild } from "../../ffi/libc.ts";
import { buildQemuArgv } from "../../agent/qemu/argv.ts";
import { runQmpRelay, type RelayChannel, type RelaySession } from "../../agent/qemu/relay.ts";
import { unixTransport } from "../../agent/qemu/unix-transport.ts";
import { createLogger } from "../../agent/log.ts";

class FakeClient implements RelaySession {
  received = "";
  private inbox: Uint8Array[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  closedByRelay = false;

  async *chunks() {
    for (;;) {
      const c = this.inbox.shift();
      if (c) {
        yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
  write(data: Uint8Array) {
    this.received += new TextDecoder().decode(data);
  }
  close() {
    this.closedByRelay = true;
  }
  send(s: string) {
    this.inbox.push(new TextEncoder().encode(s));
    this.wake?.();
  }
  leave() {
    this.ended = true;
    this.wake?.();
  }
  async waitFor(re: RegExp, ms = 5000) {
    const until = performance.now() + ms;
    while (!re.test(this.received)) {
      if (performance.now() > until) throw new Error(`timed out waiting for ${re}: got ${this.received}`);
      await Bun.sleep(5);
    }
  }
}

let dir: string;
let qemu: ReturnType<typeof Bun.spawn>;

beforeAll(() => {
  dir = mkdtempSync(`${tmpdir()}/relay-`);
  const built = buildQemuArgv({
    dmArgv: ["-machine", "none", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none"],
    restoreArgIndex: null,
    monitors: ["qmp-agent", "qmp-relay"],
    restoreFd: false,
    sandbox: true,
  });
  if (!built.ok) throw new Error(built.reason);
  const fds = [listenUnixForChild(`${dir}/agent.sock`), listenUnixForChild(`${dir}/relay.sock`)];
  qemu = Bun.spawn(["/usr/bin/qemu-system-x86_64", ...built.argv], { stdio: ["ignore", "inherit", "inherit", ...fds] });
  for (const fd of fds) close(fd);
});

afterAll(async () => {
  qemu.kill("SIGKILL");
  await qemu.exited;
  rmSync(dir, { recursive: true, force: true });
});

test("two clients in turn each get a fresh greeting and working commands", async () => {
  const clients = [new FakeClient(), new FakeClient()];
  const queue = [...clients];
  const channel: RelayChannel = { accept: async () => queue.shift() ?? new Promise<never>(() => undefined) };
  const lines: string[] = [];
  const relay = runQmpRelay({
    channel,
    connectQemu: () => unixTransport(`${dir}/relay.sock`),
    log: createLogger({ sink: { write: (l) => lines.push(l) } }),
    sessions: 2,
  });
  for (const c of clients) {
    await c.waitFor(/"QMP"/);
    c.send('{"execute":"qmp_capabilities"}\n');
    await c.waitFor(/"return": \{\}/);
    c.send('{"execute":"query-status","id":"x"}\n');
    await c.waitFor(/"status": "\w+".*"id": "x"|"id": "x".*"status"/);
    expect(c.received.match(/"QMP"/g)?.length).toBe(1);
    c.leave();
  }
  await relay;
  expect(clients.every((c) => c.closedByRelay)).toBe(true);
  expect(lines.join("")).toMatch(/client 2 done/);
});
