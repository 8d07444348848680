// TCP throughput across the tc redirect versus across a Linux bridge (the Qubes design), same
// topology, same run, alternating; and the time linkNic takes to set up one NIC pair (goal:
// under 5 ms). Prints numbers, asserts nothing. Needs root, iperf3 and iproute2.
// Run: ./node_modules/.bin/bun test/bench/net.ts [seconds-per-iperf-run] [rounds]
//
// Topology, all in namespaces created here:
//   guest ns: g0 10.77.0.2/24 ──veth── tap   stub ns   nf ──veth── b0 10.77.0.1/24 backend ns
// The stub side's "tap" is a veth end: iperf3 needs a kernel interface on the guest side, and
// the redirect path (tap ingress -> nf egress) is the same whatever the device type.
import { linkNic, openNetlink, unlinkNic } from "../../agent/net/index.ts";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const PAIRS = 20;

async function sh(...cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")}: exit ${code}: ${err.trim()}`);
  return out;
}

/** Inside the stub namespace: the agent's own code, timed. */
async function inside(mode: string): Promise<void> {
  const nl = openNetlink();
  if (mode === "link") await linkNic(nl, { netfront: "nf", tap: "tap" });
  else if (mode === "unlink") await unlinkNic(nl, { netfront: "nf", tap: "tap" });
  else if (mode === "setup-times") {
    const first: number[] = [];
    const again: number[] = [];
    for (let i = 0; i < PAIRS; i++) {
      let t0 = performance.now();
      await linkNic(nl, { netfront: `sn${i}`, tap: `st${i}`, mtu: 1500, allowedSources: ["10.0.0.0/24"], localDhcp: true });
      first.push(performance.now() - t0);
      t0 = performance.now();
      await linkNic(nl, { netfront: `sn${i}`, tap: `st${i}`, mtu: 1500, allowedSources: ["10.0.0.0/24"], localDhcp: true });
      again.push(performance.now() - t0);
    }
    process.stdout.write(JSON.stringify({ first, again }));
  }
  nl.close();
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log("net bench: needs root (network namespaces); skipped");
    return;
  }
  const tag = `nb${process.pid % 100000}`;
  const [G, S, B] = [`${tag}g`, `${tag}s`, `${tag}b`];
  const self = new URL(import.meta.url).pathname;
  const inStub = (mode: string) => sh("ip", "netns", "exec", S, process.execPath, self, "--inside", mode);
  try {
    for (const n of [G, S, B]) await sh("ip", "netns", "add", n);
    await sh("ip", "-n", S, "link", "add", "name", "tap", "type", "veth", "peer", "name", "g0", "netns", G);
    await sh("ip", "-n", S, "link", "add", "name", "nf", "type", "veth", "peer", "name", "b0", "netns", B);
    await sh("ip", "-n", G, "addr", "add", "10.77.0.2/24", "dev", "g0");
    await sh("ip", "-n", B, "addr", "add", "10.77.0.1/24", "dev", "b0");
    for (const [n, d] of [[G, "g0"], [B, "b0"], [G, "lo"], [B, "lo"]] as const) await sh("ip", "-n", n, "link", "set", d, "up");
    const server = Bun.spawn(["ip", "netns", "exec", B, "iperf3", "-s", "-B", "10.77.0.1"], { stdout: "ignore", stderr: "ignore" });
    await Bun.sleep(300);
    const iperf = async (): Promise<number> => {
      const out = JSON.parse(await sh("ip", "netns", "exec", G, "iperf3", "-c", "10.77.0.1", "-t", String(seconds), "-J")) as { end: { sum_received: { bits_per_second: number } } };
      return out.end.sum_received.bits_per_second / 1e9;
    };
    const redirect: number[] = [];
    const bridge: number[] = [];
    try {
      for (let r = 0; r < rounds; r++) {
        await inStub("link");
        redirect.push(await iperf());
        await inStub("unlink");
        await sh("ip", "-n", S, "link", "add", "br0", "type", "bridge");
        await sh("ip", "-n", S, "link", "set", "tap", "master", "br0");
        await sh("ip", "-n", S, "link", "set", "nf", "master", "br0");
        for (const d of ["br0", "tap", "nf"]) await sh("ip", "-n", S, "link", "set", d, "up");
        // A new bridge port spends forward-delay in learning; Qubes sets it to 0 as well.
        await sh("ip", "-n", S, "link", "set", "br0", "type", "bridge", "forward_delay", "0");
        await Bun.sleep(100);
        bridge.push(await iperf());
        await sh("ip", "-n", S, "link", "del", "br0");
      }
    } finally {
      server.kill();
      await server.exited;
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(", ");
    console.log(`iperf3 TCP guest -> backend, ${seconds} s per run, ${rounds} rounds alternating:`);
    console.log(`  tc redirect   ${mean(redirect).toFixed(2)} Gbit/s  (${fmt(redirect)})`);
    console.log(`  linux bridge  ${mean(bridge).toFixed(2)} Gbit/s  (${fmt(bridge)})`);
    console.log(`  ratio redirect/bridge = ${(mean(redirect) / mean(bridge)).toFixed(2)} (goal >= 1.0)`);

    for (let i = 0; i < PAIRS; i++) {
      await sh("ip", "-n", S, "link", "add", "name", `sn${i}`, "type", "veth", "peer", "name", `sp${i}`);
      await sh("ip", "-n", S, "tuntap", "add", "dev", `st${i}`, "mode", "tap");
    }
    const t = JSON.parse(await inStub("setup-times")) as { first: number[]; again: number[] };
    console.log(`linkNic, ${PAIRS} fresh NIC pairs (tap guard with a prefix and local DHCP, MTU), one process:`);
    const [cold, ...warm] = t.first;
    console.log(`  very first link (cold: FFI load, JIT) ${cold!.toFixed(2)} ms`);
    console.log(`  first link of the other ${warm.length}  median ${pct(warm, 0.5).toFixed(2)} ms  p95 ${pct(warm, 0.95).toFixed(2)} ms  max ${Math.max(...warm).toFixed(2)} ms  (goal < 5 ms)`);
    console.log(`  link again (idempotent)  median ${pct(t.again, 0.5).toFixed(2)} ms  p95 ${pct(t.again, 0.95).toFixed(2)} ms`);
  } finally {
    for (const n of [G, S, B]) await Bun.spawn(["ip", "netns", "del", n], { stderr: "ignore" }).exited;
  }
}

if (process.argv[2] === "--inside") await inside(process.argv[3] ?? "");
else await main();
