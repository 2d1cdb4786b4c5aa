import { PlexdError } from "../../proto/lib/errors.js";

// Duration strings of spec/control-plane.md 2.3: one or more `<number><unit>` groups,
// fractions allowed, units ms|s|m|h (e.g. `2.34s`, `72h15m`).

const whole = /^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$/;
const group = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;
const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a duration to milliseconds (possibly fractional). Throws invalid_argument. */
export function parseDuration(text: string): number {
  if (typeof text !== "string" || !whole.test(text)) {
    throw new PlexdError("invalid_argument", `invalid duration: ${JSON.stringify(String(text).slice(0, 64))}`);
  }
  let total = 0;
  for (const m of text.matchAll(group)) total += Number(m[1]) * (unitMs[m[2] ?? ""] ?? Number.NaN);
  if (!Number.isFinite(total)) throw new PlexdError("invalid_argument", `duration out of range: ${text.slice(0, 64)}`);
  return total;
}

export function tryParseDuration(text: unknown): number | undefined {
  if (typeof text !== "string") return undefined;
  try {
    return parseDuration(text);
  } catch {
    return undefined;
  }
}

// RFC 3339 timestamps (2.3): a zone designator is required; any fractional precision and any
// offset are accepted. Date.parse is not used because its accepted forms are implementation
// defined (it takes zone-less strings as local time, for one).
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
