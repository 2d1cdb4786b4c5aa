// Which journald entries are kept (docs/telemetry.md#logs): unit and severity filters apply
// to journald only; files are chosen by `sources` and `filters[].path` together.
import type { LogFilter } from "../../config/schema-telemetry.js";

/** Always kept, whatever the unit filters say: the operator must see plexd itself. */
const ownUnits = ["plexd.service", "plexd-privhelper.service"];

/** debug|info|warn|error keep priority ≤ 7|6|4|3; the default minimum is info. */
const maxPriority = { debug: 7, info: 6, warn: 4, error: 3 } as const;

export interface JournalFilter {
  keep(unit: string, priority: number): boolean;
}

const unitName = (u: string): string => (u.includes(".") ? u : `${u}.service`);

export function journalFilter(filters: readonly LogFilter[]): JournalFilter {
  const units = filters.flatMap((f) => (f.unit === undefined ? [] : [unitName(f.unit)]));
  const levels = filters.flatMap((f) => (f.severity === undefined ? [] : [maxPriority[f.severity]]));
  // Several severity filters: the most permissive one wins (each asks to keep its lines).
  const max = levels.length === 0 ? maxPriority.info : Math.max(...levels);
  const allowed = new Set([...units, ...ownUnits]);
  return {
    keep: (unit, priority) => priority <= max && (units.length === 0 || allowed.has(unit)),
  };
}

/** Files tailed: file entries of `sources` and the `filters[].path` globs, once each. */
export function filePatterns(sources: readonly string[], filters: readonly LogFilter[]): string[] {
  const all = [...sources.filter((s) => s !== "journald"), ...filters.flatMap((f) => (f.path === undefined ? [] : [f.path]))];
  return [...new Set(all)];
}
