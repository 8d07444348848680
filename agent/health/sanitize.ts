// Making hostile text safe to print. What a stub domain writes may come from a compromised
// QEMU, so nothing it wrote reaches a terminal raw: control characters (C0, DEL, C1 — 0x9B is
// a one-byte CSI on some terminals), bidirectional overrides and other invisible format
// characters are shown as escapes, and the backslash is doubled so an escape cannot be faked.

// Cc: controls; Cf: format (bidi overrides, zero-width); Zl/Zp: line/paragraph separators;
// Co/Cn: private-use and unassigned code points, whose rendering nobody can predict.
const UNSAFE = /[\\\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}]/gu;

function escapeChar(c: string): string {
  if (c === "\\") return "\\\\";
  if (c === "\n") return "\\n";
  if (c === "\t") return "\\t";
  const cp = c.codePointAt(0) ?? 0;
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, "0")}` : `\\u{${cp.toString(16)}}`;
}

/** `s` with every unsafe character escaped; printable text (any script) is kept. */
export function escapeText(s: string): string {
  return s.replace(UNSAFE, escapeChar);
}

/** Raw bytes that may not be UTF-8: printable ASCII kept, everything else as \xNN. */
export function escapeBytes(b: Uint8Array): string {
  let out = "";
  for (const byte of b) {
    if (byte === 0x5c) out += "\\\\";
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A printable preview of a raw value: its first `maxBytes` bytes, escaped, with "…" if cut. */
export function preview(raw: Uint8Array, maxBytes = 48): string {
  const cut = raw.length > maxBytes;
  const head = raw.subarray(0, maxBytes);
  let s: string;
  try {
    s = escapeText(utf8.decode(head));
  } catch {
    // Not UTF-8, or the cut split a character: show bytes, never a replacement guess.
    s = escapeBytes(head);
  }
  return cut ? `${s}…` : s;
}

/** At most `max` characters (code points), with "…" as the last one when cut. */
export function truncate(s: string, max: number): string {
  const chars = Array.from(s);
  return chars.length <= max ? s : `${chars.slice(0, Math.max(0, max - 1)).join("")}…`;
}

/**
 * JSON for a terminal or a pipe. JSON.stringify escapes C0 controls but leaves DEL, C1, bidi
 * overrides and separators raw; escaping every non-ASCII UTF-16 unit keeps it valid JSON that
 * is plain ASCII, so no byte of it can steer a terminal.
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
