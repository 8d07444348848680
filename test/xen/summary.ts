// What a failed nested run leaves for the reader of CI's last lines: `make test` prints the
// newest summary after the nested files fail, so the reasons end the output, not 1,000 lines of
// console. Bounded: ≤ MAX_CONTEXT lines of console around the FAIL lines (and its last TAIL
// lines if dom0 never finished), then every result line, then one line per failure.
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

/** Console lines kept around each FAIL line (before, after), and in all. */
const BEFORE = 12;
const AFTER = 20;
const MAX_CONTEXT = 120;
/** Console lines kept from the end of a run that never printed E2E DONE. */
const TAIL = 40;
const WIDTH = 240;

export function failureSummary(title: string, log: string, bad: string[]): string {
  const lines = log.split(/\r*\n/).map((l) => l.replace(/\r/g, " ").slice(0, WIDTH));
  const keep = new Set<number>();
  lines.forEach((l, i) => {
    if (!l.startsWith("E2E FAIL ")) return;
    for (let j = Math.max(0, i - BEFORE); j <= Math.min(lines.length - 1, i + AFTER); j++) keep.add(j);
  });
  // A run that never reached its end: the console's last lines say where it stopped.
  if (!lines.some((l) => /^E2E DONE\b/.test(l))) for (let j = Math.max(0, lines.length - TAIL); j < lines.length; j++) keep.add(j);
  const context = [...keep].sort((a, b) => a - b).slice(-MAX_CONTEXT).map((i) => `  ${lines[i]}`);
  return [
    `===== ${title}: ${bad.length} failure(s) =====`,
    ...(context.length > 0 ? ["console around the FAIL lines (and its end, if dom0 never finished):", ...context] : []),
    "result lines:",
    ...lines.filter((l) => /^E2E (PASS|FAIL|DONE)\b/.test(l)).map((l) => `  ${l}`),
    "failures:",
    ...bad.map((b) => `  ${b.slice(0, WIDTH)}`),
    "",
  ].join("\n");
}

/** Appends a summary to `file` (Makefile's `test` removes it before the nested files run). */
export function recordFailure(file: string, title: string, log: string, bad: string[]): void {
  mkdirSync(dirname(file), { recursive: true });
  appendFileSync(file, failureSummary(title, log, bad));
}
