// /sbin/poweroff in the image is stage 0 under another name: the kernel runs it on `xl shutdown`
// (orderly_poweroff), and it must hand the stop to PID 1 as SIGTERM. Tested with the real
// stage 0 compiled as build.ts compiles it, in a fresh PID namespace whose PID 1 is a shell
// that records the signal; and in the built images, that the link is there.
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { splitInitramfs } from "../build/initramfs.ts";
import { compileStage0 } from "./stage0.ts";

const root = new URL("../..", import.meta.url).pathname;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "poweroff-helper-"));
  compileStage0(join(dir, "init"));
  symlinkSync(join(dir, "init"), join(dir, "poweroff"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(argv: string[]): { code: number | null; out: string } {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString() + p.stderr.toString() };
}

test("run as poweroff, stage 0 sends SIGTERM to PID 1 of its namespace and exits 0", () => {
  if (process.getuid?.() !== 0) throw new Error("needs root (unshare --pid)");
  // PID 1 here is sh with a TERM trap (PID 1 only receives signals it handles); it waits for
  // the helper, then for the signal, and prints what it saw.
  const script = `got=; trap 'got=1' TERM; ${join(dir, "poweroff")}; echo helper-exit=$?; i=0; while [ -z "$got" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; echo "\${got:+PID1-GOT-TERM}\${got:-NO-TERM}"`;
  const r = run(["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", script]);
  expect(r.out).toMatch(/stage0: poweroff: asked PID 1 to stop \(SIGTERM\)/);
  expect(r.out).toMatch(/helper-exit=0/);
  expect(r.out).toMatch(/PID1-GOT-TERM/);
  expect(r.out).not.toMatch(/NO-TERM/);
  expect(r.code).toBe(0);
});

test("under any other name and not PID 1, stage 0 refuses and signals nobody", () => {
  const r = run([join(dir, "init")]);
  expect(r.code).toBe(1);
  expect(r.out).toMatch(/must run as PID 1/);
});

test("both images carry /sbin/poweroff and /sbin/stubdom-confine (via /sbin -> usr/sbin) as links to /init", async () => {
  for (const name of ["qemu-stubdom-linux-rootfs", "qemu-stubdom-linux-rootfs-dev"]) {
    const image = join(root, "dist", name);
    if (!existsSync(image)) throw new Error(`${image} is missing: run \`make build\` first`);
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    await splitInitramfs(image, d);
    for (const link of ["poweroff", "stubdom-confine"]) {
      const x = run(["sh", "-c", `cd ${d} && unsquashfs -ll usr.squashfs sbin/${link}`]);
      expect(x.code, x.out).toBe(0);
      expect(x.out).toMatch(new RegExp(`lrwxrwxrwx .* squashfs-root/sbin/${link} -> /init`));
    }
  }
});
