import { defineConfig } from "vitest/config";

// Vitest runs on the Bun runtime (`bunx --bun vitest`) so tests can import bun:ffi. Bun's
// child_process lacks what the forks pool needs, so test files run in worker threads.
export default defineConfig({
  test: {
    root: new URL("..", import.meta.url).pathname,
    include: ["test/**/*.test.ts"],
    pool: "threads",
    testTimeout: 20_000,
    hookTimeout: 60_000,
  },
});
