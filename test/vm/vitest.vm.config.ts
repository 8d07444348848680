import { defineConfig } from "vitest/config";

// The stub-domain VM tests (*.vmtest.ts, `make vm-test`): one file, run alone, because each boot
// takes the machine-wide VM lock and minutes of TCG.
export default defineConfig({
  test: {
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/vm/**/*.vmtest.ts"],
    pool: "threads",
    fileParallelism: false,
    testTimeout: 900_000,
    hookTimeout: 1_800_000,
  },
});
