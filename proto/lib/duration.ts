// Durations and timestamps: the one implementation every process uses.
//
// Two duration grammars exist, and both are kept strict:
//   - local (configuration and command line, docs/config-reference.md): `<integer><unit>`
//     groups, e.g. `500ms`, `90s`, `1h30m`; bare numbers and fractions are refused;
//   - wire (docs/architecture.md#the-control-plane-channel): the same with fractions allowed, e.g. `2.34s`.
// Units are ms, s, m and h in both. formatDuration writes text valid under both.
import { PlexdError } from "./errors.js";

const unitMs: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const localRe = /^(?:\d+(?:ms|s|m|h))+$/;
const wireRe = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const groupRe = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;

function sum(text: string): number {
  let total = 0;
  for (const m of text.matchAll(groupRe)) total += Number(m[1]) * (unitMs[m[2] ?? ""] ?? Number.NaN);
  return total;
}

/** Milliseconds of a local-grammar duration, or undefined (also beyond a safe integer). */
export function parseDuration(text: string): number | undefined {
  if (!localRe.test(text)) return undefined;
  const ms = sum(text);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Milliseconds (fractional below 1 ms where the text says so) of a wire-grammar duration. Throws invalid_argument. */
export function parseWireDuration(text: string): number {
  if (typeof text !== "string" || !wireRe.test(text)) {
    throw new PlexdError("invalid_argument", `invalid duration ${JSON.stringify(String(text).slice(0, 64))} (expected e.g. 30s, 2.34s, 1h30m)`);
  }
  const ms = sum(text);
  if (!Number.isFinite(ms)) throw new PlexdError("invalid_argument", `duration out of range: ${text.slice(0, 64)}`);
  return ms;
}

/** parseWireDuration for untrusted input: undefined instead of an error. */
export function tryParseWireDuration(text: unknown): number | undefined {
  if (typeof text !== "string") return undefined;
  try {
    return parseWireDuration(text);
  } catch {
    return undefined;
  }
}

/** Whether `text` is a wire-grammar duration (for schema checks). */
export function isWireDuration(text: string): boolean {
  return tryParseWireDuration(text) !== undefined;
}

/** Whole milliseconds as duration text, largest units first (`1h30m`, `2m30s250ms`, `0s`). */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new PlexdError("invalid_argument", `cannot format ${ms} ms as a duration`);
  if (ms === 0) return "0s";
  let rest = ms;
  let out = "";
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000], ["ms", 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

/** formatDuration truncated to whole seconds, for ages and uptimes (`72h15m`, `0s`). */
export function formatSeconds(ms: number): string {
  return formatDuration(Math.max(0, Math.floor(ms / 1000)) * 1000);
}

// RFC 3339 timestamps (control-plane §2.3): a zone designator is required; any fractional
// precision and any offset are accepted. Date.parse is not used because its accepted forms
// are implementation defined (it takes zone-less strings as local time, for one).
const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Milliseconds since the epoch (fractional below 1 ms), or undefined if not RFC 3339 with a zone. */
export function parseTimestamp(text: string): number | undefined {
  const m = rfc3339.exec(text);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60) return undefined;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  if (day > daysInMonth) return undefined;
  let ms = Date.UTC(year, month - 1, day, hour, minute, second);
  // Years below 100 are mapped to 19xx by Date.UTC; RFC 3339 means the literal year.
  if (year < 100) ms = new Date(ms).setUTCFullYear(year);
  if (m[7] !== undefined) ms += Number(`0${m[7]}`) * 1000;
  if (m[8] === undefined) {
    const offH = Number(m[10]);
    const offM = Number(m[11]);
    if (offH > 23 || offM > 59) return undefined;
    const off = (offH * 60 + offM) * 60_000;
    ms -= m[9] === "-" ? -off : off;
  }
  return ms;
}
