import { PlexdError } from "../../proto/lib/errors.js";

const grammar = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
const part = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;
const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses the control-plane duration grammar (§2.3), e.g. `30s`, `72h15m`, `2.34s`, into milliseconds. */
export function parseDuration(text: string): number {
  if (!grammar.test(text)) throw new PlexdError("invalid_argument", `invalid duration ${JSON.stringify(text)} (expected e.g. 30s, 500ms, 24h, 1h30m)`);
  let total = 0;
  for (const m of text.matchAll(part)) total += Number(m[1]) * (unitMs[m[2] ?? ""] ?? 0);
  return Math.round(total);
}

/** Inverse of parseDuration for whole milliseconds; always valid under the grammar. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
