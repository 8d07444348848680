// A scripted stand-in for QEMU, run by the same bun binary: it takes the stub domain's
// additions exactly as the agent builds them (`-chardev socket,fd=N,server=on` + `-mon`),
// speaks enough QMP for the supervisor, and misbehaves on request:
//   --mode ok         serve QMP; `quit` or SIGTERM exits 0
//   --mode crash      serve QMP, print --lines stderr lines, then exit with --code after --after ms
//   --mode hang       serve QMP but ignore `quit` and SIGTERM (only SIGKILL ends it)
//   --mode slow       wait --after ms before accepting QMP, then behave like ok
//   --mode refuse     accept connections but never greet
//   --mode die-on-qmp exit with --code as soon as the monitor is spoken to (dies mid-setup)
//   --mode flood      write --lines stderr lines as fast as possible, then crash with 5 more
//   --mode poweroff   serve QMP; after --after ms send the guest's SHUTDOWN event (--reason,
//                     default guest-shutdown) on every monitor and exit with --code (default 0),
//                     as Xen's QEMU does when the guest powers itself off; with --stay, keep
//                     running after the event (libxl's -no-shutdown)
//   --mode spawn      serve QMP, then after --after ms try to run /bin/true (as an exploit would)
//   with -incoming: query-status says "inmigrate" for --incoming-ms ms (-1: for ever), as a QEMU
//                     waiting for the restore stream does
//   --mode orphans    orphan --count grandchildren in --bursts bursts (each burst exits together
//                     once orphaned), then exit --code after --after ms
import net from "node:net";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
};
const mode = opt("mode", "ok");
const after = Number(opt("after", "300"));
const code = Number(opt("code", mode === "poweroff" ? "0" : "1"));
const lines = Number(opt("lines", "5"));
const incomingMs = args.includes("-incoming") ? Number(opt("incoming-ms", "500")) : 0;
const startedAt = Date.now();

const monitorFds: number[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] !== "-chardev") continue;
  const m = /(?:^|,)fd=(\d+)(?:,|$)/.exec(args[i + 1] ?? "");
  if (m) monitorFds.push(Number(m[1]));
}
if (!args.includes("-sandbox")) {
  process.stderr.write("fake-qemu: no -sandbox\n");
  process.exit(2);
}

process.on("SIGTERM", () => {
  if (mode === "hang") {
    process.stderr.write("fake-qemu: ignoring SIGTERM\n");
    return;
  }
  process.stderr.write("fake-qemu: SIGTERM\n");
  process.exit(0);
});

const clients: net.Socket[] = [];

function serveQmp(fd: number): void {
  const srv = net.createServer((sock) => {
    if (mode === "refuse") return;
    clients.push(sock);
    sock.write(`${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } })}\r\n`);
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line) as { execute: string; id?: unknown; arguments?: Record<string, unknown> };
        const reply = (ret: unknown) => sock.write(`${JSON.stringify({ return: ret, id: msg.id })}\r\n`);
        if (mode === "die-on-qmp") {
          process.stderr.write("fake-qemu: dying during QMP setup\n", () => process.exit(code));
          return;
        }
        switch (msg.execute) {
          case "quit":
            reply({});
            if (mode !== "hang") {
              process.stderr.write("fake-qemu: quit\n");
              setTimeout(() => process.exit(0), 10);
            }
            break;
          case "add-fd":
            process.stderr.write(`fake-qemu: add-fd ${JSON.stringify(msg.arguments)}\n`);
            reply({ "fdset-id": msg.arguments?.["fdset-id"], fd: 99 });
            break;
          case "query-status":
            if (incomingMs < 0 || Date.now() - startedAt < incomingMs) reply({ status: "inmigrate", running: false });
            else reply({ status: "running", running: true });
            break;
          default:
            reply({});
        }
      }
    });
    sock.on("error", () => undefined);
  });
  srv.listen({ fd });
}

async function main(): Promise<void> {
  process.stderr.write(`fake-qemu: mode ${mode}, monitors on fds ${monitorFds.join(",")}\n`);
  if (mode === "slow") await Bun.sleep(after);
  for (const fd of monitorFds) serveQmp(fd);
  if (mode === "flood") {
    for (let i = 0; i < lines; i++) process.stderr.write(`fake-qemu: flood line ${i}\n`);
  }
  if (mode === "crash" || mode === "flood") {
    await Bun.sleep(after);
    const dying = mode === "flood" ? 5 : lines;
    for (let i = 0; i < dying; i++) process.stderr.write(`fake-qemu: dying line ${i}\n`);
    // exit() drops writes still queued on the pipe; the last words are what is under test.
    await new Promise((r) => process.stderr.write("fake-qemu: exiting\n", r));
    process.exit(code);
  }
  if (mode === "poweroff") {
    await Bun.sleep(after);
    const ev = { event: "SHUTDOWN", data: { guest: true, reason: opt("reason", "guest-shutdown") }, timestamp: { seconds: 1, microseconds: 0 } };
    await Promise.all(clients.map((c) => new Promise((r) => c.write(`${JSON.stringify(ev)}\r\n`, r))));
    process.stderr.write("fake-qemu: guest powered off\n");
    if (!args.includes("--stay")) process.exit(code);
  }
  if (mode === "spawn") {
    await Bun.sleep(after);
    process.stderr.write("fake-qemu: running /bin/true\n");
    const p = Bun.spawnSync(["/bin/true"]);
    process.stderr.write(`fake-qemu: /bin/true ran, exit ${p.exitCode}\n`);
    process.exit(code);
  }
  if (mode === "orphans") {
    const count = Number(opt("count", "100"));
    const bursts = Number(opt("bursts", "1"));
    let made = 0;
    for (let b = 0; b < bursts; b++) {
      const n = Math.floor(count / bursts) + (b < count % bursts ? 1 : 0);
      // Each grandchild is forked by a subshell that exits at once, so it is an orphan from
      // its first moment and sh can never reap it; it blocks reading fd 3 until we close the
      // other end, so a whole burst exits together, after every one of them was orphaned.
      const sh = Bun.spawn(
        ["/bin/sh", "-c", `exec 3<&0 0</dev/null; i=0; while [ $i -lt ${n} ]; do ( read x <&3 & ); i=$((i+1)); done`],
        { stdin: "pipe", stdout: "inherit", stderr: "inherit" },
      );
      await sh.exited;
      await sh.stdin.end();
      made += n;
    }
    process.stderr.write(`fake-qemu: orphaned ${made} grandchildren\n`);
    await Bun.sleep(after);
    process.exit(code);
  }
}
void main();
