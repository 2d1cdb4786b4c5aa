// The log line sent to the control plane (docs/telemetry.md#logs) and the rules that shape
// its text: UTF-8 with replacement, and the oversize cut with its "[truncated]" suffix.

export const severities = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"] as const;
export type Severity = (typeof severities)[number];

export interface LogEntry {
  timestamp: string;
  source: "journald" | "file";
  /** systemd unit (journald; empty when absent, and for files). */
  unit: string;
  /** File sources only. */
  path?: string;
  message: string;
  severity: Severity;
  hostname: string;
}

export const truncatedMark = "[truncated]";
const markBytes = Buffer.byteLength(truncatedMark);

/**
 * Cuts `text` so that it, plus "[truncated]", fits `max` bytes of UTF-8; shorter text is kept.
 * The cut never splits a character: continuation bytes (10xxxxxx) are given back.
 */
export function cutText(text: string, max: number): string {
  if (text.length * 3 <= max || Buffer.byteLength(text) <= max) return text;
  return cutBytes(Buffer.from(text), max);
}

/** The same cut on raw bytes (a file line, decoded with replacement); `bytes` may be longer than max. */
export function cutBytes(bytes: Buffer, max: number): string {
  // Replacement characters (3 bytes each) can make decoded text longer than its bytes.
  if (bytes.length <= max) return cutText(bytes.toString("utf8"), max);
  let end = Math.max(0, max - markBytes);
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  const text = bytes.subarray(0, end).toString("utf8");
  // Invalid bytes decode to U+FFFD (3 bytes): cut again on the decoded text when that grew it.
  if (Buffer.byteLength(text) + markBytes <= max) return text + truncatedMark;
  const again = Buffer.from(text);
  let e = max - markBytes;
  while (e > 0 && (again[e]! & 0xc0) === 0x80) e--;
  return again.subarray(0, e).toString("utf8") + truncatedMark;
}

/** journald PRIORITY 0-7 names the severities in order; anything else reads as info. */
export function severityOf(priority: unknown): Severity {
  const n = typeof priority === "string" && /^[0-7]$/.test(priority) ? Number(priority) : typeof priority === "number" ? priority : NaN;
  return Number.isInteger(n) && n >= 0 && n <= 7 ? severities[n]! : "info";
}

/** journalctl's JSON gives a field as a string, as an array of bytes (binary or invalid UTF-8), or null (too large). */
export function journalText(v: unknown): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v) && v.every((b) => typeof b === "number")) return Buffer.from(v as number[]).toString("utf8");
  // A field repeated in one entry comes as an array of values: the first one is the message.
  if (Array.isArray(v) && v.length > 0) return journalText(v[0]);
  return "";
}

/**
 * The entry's NDJSON line, as JSON.stringify would write it, with the constant members
 * written directly: at 100,000 lines/s the generic walk over the object is a real cost.
 */
export function encodeEntry(e: LogEntry): string {
  const [head, tail] = entryFrame(e);
  return head + jsonString(e.message) + tail;
}

/**
 * The entry's line around its message: `head + jsonString(message) + tail` is encodeEntry's
 * text. Lines of one file read in one poll share everything but the message, so the forwarder
 * makes the frame once per file and poll and pays only for the message per line.
 */
export function entryFrame(e: Omit<LogEntry, "message">): [head: string, tail: string] {
  const path = e.path === undefined ? "" : `"path":${jsonString(e.path)},`;
  return [`{"timestamp":"${e.timestamp}","source":"${e.source}","unit":${jsonString(e.unit)},${path}"message":`, `,"severity":"${e.severity}","hostname":${jsonString(e.hostname)}}`];
}

// Characters JSON.stringify would escape: quote, backslash, controls, and surrogates (a lone
// one is escaped; pairs are left to JSON.stringify too, which is rare enough not to matter).
// eslint-disable-next-line no-control-regex -- control characters are exactly what JSON escapes
const needsEscape = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify of a string; plain text (most log lines) is quoted without the escaping walk. */
export function jsonString(s: string): string {
  return needsEscape.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * encodeEntry's text from entryFrame's parts: `head + jsonString(message) + tail`, with the
 * quotes of plain text taken from `headQ` (head + '"') and `tailQ` ('"' + tail), so that a
 * plain line is built of two string joins, not four (each join is an object while it is buffered).
 */
export function framedLine(head: string, tail: string, headQ: string, tailQ: string, message: string): string {
  return needsEscape.test(message) ? head + JSON.stringify(message) + tail : headQ + message + tailQ;
}
