// `make run` and `make smoke`: the whole stub domain on a laptop (see stubvm.ts for what stands
// in for Xen and dom0).
//
//   bun test/vm/run.ts            boot, show `stubdom-init status` live until Ctrl-C, shut down
//   bun test/vm/run.ts --smoke    no terminal: wait for running, the demo guest's disk marker,
//                                 its lease from the agent and its ping across the redirect,
//                                 print the status, shut down; exit 0, or print the console
//                                 log and exit 1 after the deadline
// Options: --console (echo the serial console), --deadline SECONDS (smoke, default 600),
//          --mem MIB (the VM's memory, default 512), --keep (keep the work directory),
//          --rootfs FILE (boot another dev rootfs than dist/qemu-stubdom-linux-rootfs-dev).
import { parseArgs } from "node:util";
import { join } from "node:path";
import { BACKEND_IP, GUEST_DNS, GUEST_IP, memoryOf, StubVm } from "./stubvm.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    smoke: { type: "boolean" },
    console: { type: "boolean" },
    deadline: { type: "string", default: "600" },
    mem: { type: "string", default: "512" },
    keep: { type: "boolean" },
    rootfs: { type: "string" },
  },
});
const say = (s: string) => void process.stdout.write(`==> ${s}\n`);
const dir = join(process.env.TMPDIR ?? "/tmp", `stubvm-${values.smoke ? "smoke" : "run"}-${process.pid}`);
const deadlineMs = Number(values.deadline) * 1000;

say(`starting xenstored, simulate-toolstack (demo guest) and the stub domain VM; logs in ${dir}`);
const vm = await StubVm.start({
  dir,
  memMiB: Number(values.mem),
  ...(values.rootfs ? { rootfs: values.rootfs } : {}),
  ...(values.console ? { echo: (s: string) => void process.stdout.write(s) } : {}),
});

async function reportRunning(ms: number): Promise<void> {
  const r = await vm.alive(vm.status.waitFor("phase running", (r) => r.values.phase === "running", ms));
  say(`stub domain running after ${vm.elapsed().toFixed(1)} s (QEMU started; ${vm.toolstack.out.text.match(/device model running after [0-9.]+ s/)?.[0] ?? "simulator still waiting"})`);
  const mem = memoryOf(r);
  if (mem) say(`VM memory: -m ${values.mem} MiB, MemTotal ${mem.totalMiB} MiB, MemAvailable ${mem.availableMiB} MiB`);
}

async function smoke(): Promise<number> {
  const deadline = Date.now() + deadlineMs;
  const left = () => Math.max(1, deadline - Date.now());
  try {
    await reportRunning(left());
    for (const d of vm.disks) {
      await vm.alive(vm.guestSerial.out.waitFor(new RegExp(`DEMO-GUEST: disk /dev/sd[a-z] ${d.marker}`), left()));
      say(`demo guest read ${d.marker} from its disk ${d.vdev} (${d.image} -> virtio-blk -> stub domain -> QEMU IDE)`);
    }
    const dots = (ip: string) => ip.replace(/\./g, "\\.");
    await vm.alive(vm.guestSerial.out.waitFor(new RegExp(`DEMO-GUEST: lease ${dots(GUEST_IP)} router ${dots(BACKEND_IP)} dns ${dots(GUEST_DNS)}`), left()));
    say(`demo guest leased ${GUEST_IP} (dns ${GUEST_DNS}) from the agent's DHCP responder`);
    await vm.alive(vm.guestSerial.out.waitFor(new RegExp(`DEMO-GUEST: ping ${BACKEND_IP.replace(/\./g, "\\.")} ok`), left()));
    const icmp = vm.ns.icmpCounters();
    if (!(icmp.InEchos! > 0)) throw new Error(`the backend namespace saw no echo request (Icmp ${JSON.stringify(icmp)})`);
    const back = vm.ns.exec(["busybox", "ping", "-c", "1", "-W", "10", GUEST_IP], { allowFail: true });
    if (!/1 packets received/.test(back)) throw new Error(`the backend cannot ping the guest at ${GUEST_IP}: ${back}`);
    say(`demo guest pinged ${BACKEND_IP} across the redirect (backend InEchos ${icmp.InEchos}); ${BACKEND_IP} pinged the guest back`);
    process.stdout.write(vm.statusOnce().out);
  } catch (e) {
    process.stdout.write(vm.transcript());
    say(`smoke FAILED after ${vm.elapsed().toFixed(1)} s: ${(e as Error).message}`);
    await vm.stop({ keep: true });
    say(`logs kept in ${dir}`);
    return 1;
  }
  const { clean } = await vm.stop({ keep: values.keep === true });
  say(clean ? "stub domain powered off cleanly (Ctrl-Alt-Del -> SIGINT -> agent shutdown)" : "stub domain did not power off by itself: killed");
  if (!clean) process.stdout.write(vm.console.text.slice(-4000));
  return clean ? 0 : 1;
}

async function interactive(): Promise<number> {
  say("status follows (stubdom-init status 1 --watch); Ctrl-C shuts the stub domain down");
  const watch = Bun.spawn([vm.binary, "status", "1", "--watch"], {
    env: { ...process.env, XENSTORED_PATH: vm.xsSocket },
    stdio: ["ignore", "inherit", "inherit"],
  });
  reportRunning(deadlineMs).catch((e) => say((e as Error).message));
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
    vm.qemu.exited.then(() => resolve());
  });
  watch.kill("SIGTERM");
  say("shutting the stub domain down (Ctrl-Alt-Del on its keyboard)");
  const { clean } = await vm.stop({ keep: values.keep === true });
  say(clean ? "powered off cleanly" : "did not power off by itself: killed");
  return clean ? 0 : 1;
}

process.exit(values.smoke ? await smoke() : await interactive());
