// Durations on the command line: `<integer><unit>` groups, units ms, s, m, h (`500ms`, `1m30s`);
// bare numbers are rejected (spec/node-agent.md §0). Returns milliseconds or undefined.
const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string): number | undefined {
  if (!/^(\d+(ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(/(\d+)(ms|s|m|h)/g)) total += Number(m[1]) * (unitMs[m[2] ?? ""] ?? NaN);
  return Number.isFinite(total) ? total : undefined;
}
