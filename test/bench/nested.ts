// The measurements that need the real `xl create` path: boot time, xl create time, the
// agent's own overhead, the memory floor and MemAvailable at 144 MiB, for the agent and for
// the busybox baseline (test/bench/baseline), on Xen nested in QEMU (test/xen).
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Measurement } from "./run.ts";
import { ROOT } from "../xenstore/harness.ts";

export const nestedXen: Measurement = {
  name: "nested Xen (xl create: boot, memory floor, MemAvailable at 144 MiB)",
  fields: [
    "boot_ms_agent", "boot_ms_baseline", "boot_ratio", "xl_create_ms_agent", "xl_create_ms_baseline",
    "agent_overhead_ms", "min_mem_mib_agent", "min_mem_mib_baseline",
    "mem_available_mib_at_144_agent", "mem_available_mib_at_144_baseline",
    "rootfs_bytes_compressed_baseline", "rootfs_bytes_unpacked_baseline",
  ],
  async run() {
    const harness = join(ROOT, "test/xen");
    if (!existsSync(join(harness, "harness.ts"))) throw new Error("the nested Xen harness (test/xen/harness.ts) has not landed");
    throw new Error("the nested Xen harness is not wired into the bench yet");
  },
};
