// Rewrites test/config/golden/*.json from cases.ts. Run by hand after a deliberate change, then
// review the diff: `./node_modules/.bin/bun test/config/update-golden.ts`.
import { mkdirSync, writeFileSync } from "node:fs";
import { cases } from "./cases.ts";
import { GOLDEN_DIR, goldenFor } from "./golden.ts";

mkdirSync(GOLDEN_DIR, { recursive: true });
for (const name of Object.keys(cases)) {
  writeFileSync(`${GOLDEN_DIR}${name}.json`, `${JSON.stringify(goldenFor(name), null, 1)}\n`);
}
console.log(`wrote ${Object.keys(cases).length} golden files to ${GOLDEN_DIR}`);
