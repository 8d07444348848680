// Stage 0 compiled as build.ts compiles it, for the tests of its other names
// (/sbin/poweroff, /sbin/stubdom-confine).
import { join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;
export const STAGE0_SOURCES = ["agent/stage0/stage0.c", "agent/stage0/confine.c"].map((f) => join(root, f));

/** Compiles stage 0 to `out`; throws with gcc's message. */
export function compileStage0(out: string): void {
  const cc = Bun.spawnSync(["gcc", "-static", "-Os", "-Wall", "-Wextra", "-Werror", "-o", out, ...STAGE0_SOURCES], { stderr: "pipe" });
  if (cc.exitCode !== 0) throw new Error(`gcc stage0: ${cc.stderr.toString()}`);
}
