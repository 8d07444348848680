// Cutting free text to a byte budget for the health report: whole UTF-8 characters only, and
// the control characters the reader refuses replaced, so a cut value always decodes.
import { CONTROL_CHARS } from "./schema.ts";

const encoder = new TextEncoder();

/** The last `maxBytes` bytes of `s` as UTF-8, cut on a character boundary, controls replaced. */
export function tailUtf8(s: string, maxBytes: number): string {
  const clean = s.replace(CONTROL_CHARS, "\uFFFD");
  const chars = Array.from(clean);
  let bytes = 0;
  let i = chars.length;
  while (i > 0) {
    const n = encoder.encode(chars[i - 1]).length;
    if (bytes + n > maxBytes) break;
    bytes += n;
    i--;
  }
  return chars.slice(i).join("");
}

/** The first `maxBytes` bytes of `s` as UTF-8, cut on a character boundary, controls replaced. */
export function headUtf8(s: string, maxBytes: number): string {
  const chars = Array.from(s.replace(CONTROL_CHARS, "\uFFFD"));
  let bytes = 0;
  let i = 0;
  for (; i < chars.length; i++) {
    const n = encoder.encode(chars[i]).length;
    if (bytes + n > maxBytes) break;
    bytes += n;
  }
  return chars.slice(0, i).join("");
}
