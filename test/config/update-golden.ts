// Rewrites test/config/golden/*.json from cases.ts. Run by hand after a deliberate change, then
// review the diff: `./node_modules/.bin/bun test/config/update-golden.ts`.
import { mkdirSync, writeFileSync } from "node:fs";
import { GOLDEN_DIR, goldenFor, goldenNames } from "./golden.ts";

mkdirSync(GOLDEN_DIR, { recursive: true });
const names = goldenNames();
for (const name of names) writeFileSync(`${GOLDEN_DIR}${name}.json`, `${JSON.stringify(goldenFor(name), null, 1)}\n`);
console.log(`wrote ${names.length} golden files to ${GOLDEN_DIR}`);
